// Importing this module registers every op family (shape inference + gradient rule) in the op table.
import './elementwise';
import './reduce';
import './shape';
import './norm';
import './activation';
import './softmax';
import './matmul';
import './tensor-ops';
import './indexing';
import './select';
import './conv';
import './pool';
import './conv-batchnorm';
export { defineOp, defineOps, findOp, opDef, registeredOps } from './registry';
export type { OpDef, VjpContext, VjpRule, InferContext } from './registry';
