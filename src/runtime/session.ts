import * as ort from './ort.js';
import { Graph } from '../ir/graph.js';
import { encodeModel } from '../onnx/model-io.js';
import { lowerCustomOps } from './lower.js';

export interface SessionOptions {
  /** Intra-op threads; qatkit's default is 2 (the machine's cores). */
  threads?: number;
  /** ORT graph optimization level. */
  optimization?: 'disabled' | 'basic' | 'extended' | 'all';
  /** Let idle intra-op threads spin (ORT's default); off unless asked for. */
  spin?: boolean;
  /** Where ORT should save its optimized model (for inspecting fusions). */
  optimizedModelFilePath?: string;
  /** Lower with ORT's com.microsoft ops where they are faster (float32 only; training sessions). */
  contribOps?: boolean;
  /** ORT's profiler: each node's kernel time, written as JSON under this file prefix by `endProfiling()` (benchmarks). */
  profilePrefix?: string;
}

/** An ONNX Runtime session over one of our graphs (custom ops lowered first). */
export class Session {
  private constructor(
    public readonly inner: ort.InferenceSession,
    public readonly graph: Graph,
  ) {}

  static async create(graph: Graph, options: SessionOptions = {}): Promise<Session> {
    const lowered = lowerCustomOps(graph, { contribOps: options.contribOps });
    const bytes = encodeModel(lowered);
    const inner = await ort.InferenceSession.create(bytes, {
      intraOpNumThreads: options.threads ?? 2,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: options.optimization ?? 'all',
      logSeverityLevel: 3,
      // Worker threads sleep instead of spinning between ops: on 2 cores the spinning worker competes with the
      // thread that runs the graph (training steps 7-12% faster without it, bench/qat-step in alternating runs).
      extra: { session: { intra_op: { allow_spinning: options.spin ? '1' : '0' } } },
      ...(options.optimizedModelFilePath ? { optimizedModelFilePath: options.optimizedModelFilePath } : {}),
      ...(options.profilePrefix ? { enableProfiling: true, profileFilePrefix: options.profilePrefix } : {}),
    });
    return new Session(inner, lowered);
  }

  /** Runs with `feeds`; `fetches` may be output names, or preallocated tensors ORT writes into. */
  async run(
    feeds: Record<string, ort.Tensor>,
    fetches?: string[] | Record<string, ort.Tensor>,
  ): Promise<Record<string, ort.Tensor>> {
    if (fetches === undefined) return this.inner.run(feeds);
    if (Array.isArray(fetches)) return this.inner.run(feeds, fetches);
    return this.inner.run(feeds, fetches as ort.InferenceSession.FetchesType);
  }

  async release(): Promise<void> {
    await this.inner.release();
  }
}
