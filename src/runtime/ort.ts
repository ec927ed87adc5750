/**
 * ONNX Runtime for Node, as every module of qatkit imports it. onnxruntime-node 1.30's Linux build starts
 * Microsoft's 1DS telemetry with the first InferenceSession: it writes an empty /tmp/mat-debug-<pid>.log for
 * every process (a test run leaves over a thousand) and would upload usage events where a network exists.
 * A training toolkit that runs offline and in CI sends nothing and leaves nothing behind, so telemetry is off
 * unless the user has set ORT_DISABLE_TELEMETRY themselves (ORT reads it when its environment is created, at
 * the first session, after this module ran). docs/decisions.md, "ONNX Runtime telemetry off".
 */
process.env.ORT_DISABLE_TELEMETRY ??= '1';

export * from 'onnxruntime-node';
