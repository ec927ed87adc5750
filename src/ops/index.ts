// Importing this module registers every op family (shape inference + gradient rule) in the op table.
import './elementwise.js';
import './reduce.js';
import './shape.js';
import './norm.js';
import './activation.js';
import './softmax.js';
import './matmul.js';
import './tensor-ops.js';
import './indexing.js';
import './select.js';
import './conv.js';
import './pool.js';
import './resize.js';
import './conv-batchnorm.js';
export { defineOp, defineOps, findOp, opDef, registeredOps } from './registry.js';
export type { OpDef, VjpContext, VjpRule, InferContext } from './registry.js';
