// Importing this module registers every op family (shape inference + gradient rule) in the op table.
import './elementwise';
import './reduce';
import './shape';
export { defineOp, defineOps, findOp, opDef, registeredOps } from './registry';
export type { OpDef, VjpContext, VjpRule, InferContext } from './registry';
