/**
 * One training phase of a demo: `train` with a progress bar (src/cli/progress.ts) on stderr, so that stdout holds
 * only the demo's table. Accuracy in the bar is a moving average of the batches' accuracy (language models: next-token
 * accuracy per window position), as `qat train` shows it.
 */
import { Progress } from '../cli/progress.js';
import { train, TrainConfig, TrainResult } from '../train/run.js';

export async function trainWithProgress(config: TrainConfig, runDir: string, label: string, maxThreads?: number): Promise<TrainResult> {
  const progress = new Progress(label);
  let batch = config.batch;
  let accuracy = 0;
  try {
    return await train(config, runDir, {
      maxThreads,
      hooks: {
        onStart: ({ totalSteps, startStep, batch: b }) => {
          batch = b;
          progress.start(totalSteps, startStep);
        },
        onStep: (s) => {
          const a = s.correct / batch;
          accuracy = accuracy === 0 ? a : 0.95 * accuracy + 0.05 * a;
          progress.update(s.step, s.totalSteps, { loss: s.loss, acc: accuracy, tokensPerSecond: s.metrics.tokens_per_second });
        },
        log: (line) => progress.note(line),
      },
    });
  } finally {
    progress.stop();
  }
}
