"""optimum's files: `model.onnx` (text-generation-with-past), its int8/int4 quantizations, and
their gate (run through the engine's `OptimumRunner`)."""
