// The whole path in TypeScript: fp32 LeNet, a 2-bit PTQ baseline, 2-bit QAT, an integer ONNX file, its accuracy.
// Run with: node --import tsx examples/quickstart.ts (about 3 minutes on 2 cores)
import { train, quantizeRun, exportRun, evaluateOnnxFile, loadDataset, DEFAULT_TRAIN_CONFIG } from 'qatkit';

await train({ ...DEFAULT_TRAIN_CONFIG, model: 'lenet', data: 'mnist', epochs: 1 }, 'runs/quickstart/fp32');
const ptq = await quantizeRun({ from: 'runs/quickstart/fp32', quant: 'w2a2', calib: 'mse', calibBatches: 8, threads: 2 }, 'runs/quickstart/ptq-w2a2');
const qat = await train({ ...DEFAULT_TRAIN_CONFIG, from: 'runs/quickstart/fp32', quant: 'w2a2', lr: 2e-4 }, 'runs/quickstart/qat-w2a2');
const file = await exportRun({ from: 'runs/quickstart/qat-w2a2', format: 'packed', out: 'runs/quickstart/lenet-w2a2.onnx' });
const deployed = await evaluateOnnxFile(file.out, loadDataset('mnist').test);
console.log(`w2a2 PTQ ${ptq.test_accuracy}, QAT ${qat.test_accuracy}, exported file ${deployed.test_accuracy} (${file.file_bytes} bytes)`);
