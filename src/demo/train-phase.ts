/**
 * One training phase of a demo: `train` with a progress bar (src/cli/progress.ts) on stderr, so that stdout holds
 * only the demo's table. Accuracy in the bar is a moving average of the batches' accuracy (language models: next-token
 * accuracy per window position), as `qat train` shows it.
 */
import { Progress, progressHooks } from '../cli/progress.js';
import { train, TrainConfig, TrainResult } from '../train/run.js';

export async function trainWithProgress(config: TrainConfig, runDir: string, label: string, maxThreads?: number): Promise<TrainResult> {
  const progress = new Progress(label);
  try {
    return await train(config, runDir, { maxThreads, hooks: progressHooks(progress, (line) => progress.note(line)) });
  } finally {
    progress.stop();
  }
}
