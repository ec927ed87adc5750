import { DType } from '../ir/dtype.js';
import { defineOps, InferContext, OpDef, VjpContext, VjpRule } from './registry.js';
import { broadcastShapes, requireInput } from './shape-utils.js';

/** Output takes the broadcast shape of all inputs and the dtype of the first. */
export function inferBroadcast(ctx: InferContext) {
  const shapes = ctx.inputs.map((t, i) => (t ?? requireInput(ctx, i)).shape);
  return [{ dtype: requireInput(ctx, 0).dtype, shape: broadcastShapes(shapes, ctx.node) }];
}

export function inferSame(ctx: InferContext) {
  return [requireInput(ctx, 0)];
}

export function inferCompare(ctx: InferContext) {
  return [{ dtype: DType.BOOL, shape: inferBroadcast(ctx)[0].shape }];
}

type InputGradient = (c: VjpContext, dy: string) => string;

/** VJP of a two-input op: each input's rule runs only when there is a dy and that input wants a gradient. */
function twoInputVjp(da: InputGradient | undefined, db: InputGradient | undefined): VjpRule {
  return (c) => {
    const dy = c.dy(0);
    if (!dy) return [];
    return [c.wants(0) && da ? da(c, dy) : undefined, c.wants(1) && db ? db(c, dy) : undefined];
  };
}

/** Gradient of a binary broadcasting op: dx = unbroadcast(f(dy)) for each input. */
function binary(opType: string, da: InputGradient | undefined, db: InputGradient | undefined): OpDef {
  const unbroadcastTo = (i: number, rule: InputGradient | undefined): InputGradient | undefined =>
    rule && ((c, dy) => c.b.unbroadcast(rule(c, dy), c.b.shape(c.input(i))));
  return { opType, domain: '', infer: inferBroadcast, vjp: twoInputVjp(unbroadcastTo(0, da), unbroadcastTo(1, db)) };
}

/** Gradient of a unary op: dx = dy * f'(x) where `local` builds f'(x) (or the product directly). */
export function unary(opType: string, local: (c: VjpContext, dy: string) => string, domain = ''): OpDef {
  return {
    opType,
    domain,
    infer: inferSame,
    vjp: (c) => {
      const dy = c.dy(0);
      return dy ? [local(c, dy)] : [];
    },
  };
}

const x = (c: VjpContext) => c.input(0);
const y = (c: VjpContext) => c.output(0);

/**
 * Max and Min (variadic, broadcasting): dy goes to the inputs equal to the output, split evenly where
 * several tie, as PyTorch's maximum/minimum (derivatives.yaml: grad / 2 where self == other) and our
 * ReduceMax. At a tie of two, a central difference gives the same half: (max(a + h, a) - max(a - h, a)) / 2h.
 */
function extremumVjp(c: VjpContext): (string | undefined)[] {
  const { b } = c;
  const dy = c.dy(0);
  if (!dy) return [];
  const inputs = c.node.inputs;
  if (inputs.length === 1) return [dy];
  const selected = inputs.map((v) => b.castLike(b.equal(v, y(c)), dy));
  const count = selected.length === 2 ? b.add(selected[0], selected[1]) : b.op1('Sum', selected);
  const share = b.div(dy, count);
  return inputs.map((v, i) => (c.wants(i) ? b.unbroadcast(b.mul(share, selected[i]), b.shape(v)) : undefined));
}

export const elementwiseOps: OpDef[] = [
  binary('Add', (_, dy) => dy, (_, dy) => dy),
  binary('Sub', (_, dy) => dy, (c, dy) => c.b.neg(dy)),
  binary('Mul', (c, dy) => c.b.mul(dy, c.input(1)), (c, dy) => c.b.mul(dy, c.input(0))),
  // Not binary(): the divisor's rule unbroadcasts before its last divide, so each rule unbroadcasts itself.
  {
    opType: 'Div',
    domain: '',
    infer: inferBroadcast,
    vjp: twoInputVjp(
      (c, dy) => c.b.unbroadcast(c.b.div(dy, c.input(1)), c.b.shape(c.input(0))),
      // d(a/b)/db = -y/b. b is constant along the axes unbroadcast sums over, so divide and negate after
      // reducing: one full-size pass (dy * y) instead of three (the per-channel BN-folding divide uses this).
      (c, dy) => {
        const { b } = c;
        const den = c.input(1);
        return b.neg(b.div(b.unbroadcast(b.mul(dy, y(c)), b.shape(den)), den));
      },
    ),
  },
  binary(
    'Pow',
    // d(a^p)/da = p * a^(p-1)
    (c, dy) => {
      const { b } = c;
      const p = b.castLike(c.input(1), c.input(0));
      const pm1 = b.sub(p, b.scalarLike(1, p));
      return b.mul(dy, b.mul(p, b.op1('Pow', [c.input(0), pm1])));
    },
    // d(a^p)/dp = a^p * ln(a)
    (c, dy) => c.b.mul(dy, c.b.mul(y(c), c.b.log(c.input(0)))),
  ),
  unary('Neg', (c, dy) => c.b.neg(dy)),
  unary('Identity', (_, dy) => dy),
  unary('Sqrt', (c, dy) => c.b.div(dy, c.b.mul(y(c), c.b.scalarLike(2, dy)))),
  unary('Reciprocal', (c, dy) => c.b.neg(c.b.mul(dy, c.b.mul(y(c), y(c))))),
  unary('Exp', (c, dy) => c.b.mul(dy, y(c))),
  // Rotary position embeddings (Su et al. 2021) take Sin and Cos of position angles.
  unary('Sin', (c, dy) => c.b.mul(dy, c.b.op1('Cos', [x(c)]))),
  unary('Cos', (c, dy) => c.b.neg(c.b.mul(dy, c.b.op1('Sin', [x(c)])))),
  unary('Log', (c, dy) => c.b.div(dy, x(c))),
  unary('Abs', (c, dy) => c.b.mul(dy, c.b.sign(x(c)))),
  // Round, Floor, Ceil and Sign are piecewise constant: zero gradient almost everywhere.
  ...['Round', 'Floor', 'Ceil', 'Sign'].map((op) => unary(op, (c, dy) => c.b.mul(dy, c.b.scalarLike(0, dy)))),
  { opType: 'Sum', domain: '', infer: inferBroadcast, vjp: (c) => c.node.inputs.map((inp) => (c.dy(0) ? c.b.unbroadcast(c.dy(0)!, c.b.shape(inp)) : undefined)) },
  ...['Equal', 'Greater', 'Less', 'GreaterOrEqual', 'LessOrEqual', 'And', 'Or', 'Xor'].map(
    (opType): OpDef => ({ opType, domain: '', infer: inferCompare }),
  ),
  { opType: 'Not', domain: '', infer: inferSame },
  // Mod on integers (position arithmetic); no gradient (piecewise x - k b for floats, which PyTorch models do not train through).
  { opType: 'Mod', domain: '', infer: inferBroadcast },
  { opType: 'Max', domain: '', infer: inferBroadcast, vjp: extremumVjp },
  { opType: 'Min', domain: '', infer: inferBroadcast, vjp: extremumVjp },
];

defineOps(elementwiseOps);
