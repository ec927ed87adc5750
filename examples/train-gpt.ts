// A small GPT written with the builder API, trained on Moby Dick as `qat train --model gpt` would, then
// evaluated. Run with: node --import tsx examples/train-gpt.ts
import { TransformerBuilder, train, DEFAULT_TRAIN_CONFIG, loadTextData } from 'qatkit';
import type { Model } from 'qatkit';

function tinyGpt(vocabSize: number, context: number): Model {
  const m = new TransformerBuilder('tiny-gpt', { vocabSize, context });
  m.embedding(64);
  m.positionEmbedding();
  for (let i = 0; i < 2; i++) {
    const x = m.current;
    m.layerNorm({ name: `blocks.${i}.ln_1` });
    const mixed = m.add(x, m.attention({ heads: 2, name: `blocks.${i}.attn` }));
    m.layerNorm({ name: `blocks.${i}.ln_2` });
    m.dense(256, { name: `blocks.${i}.mlp.fc` });
    m.gelu();
    m.add(mixed, m.dense(64, { name: `blocks.${i}.mlp.proj` }));
  }
  m.layerNorm({ name: 'ln_f' });
  m.lmHead({ tied: true });
  return m.finishLanguageModel();
}

const text = loadTextData('moby-dick');
const result = await train(
  { ...DEFAULT_TRAIN_CONFIG, model: tinyGpt(text.vocabSize, 64), data: 'moby-dick', context: 64, steps: 50, batch: 16, lr: 3e-3, warmupSteps: 10 },
  'runs/example-tiny-gpt',
);
console.log(`val_loss ${result.test_loss.toFixed(3)} after ${result.steps} steps`);
