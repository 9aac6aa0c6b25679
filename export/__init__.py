"""Model directory in → validated, quantized ONNX directory out (optimum, onnxruntime).

Entry points: `python -m export` (see `export.cli`), `export.pipeline.export_model`, and the
reusable gate checks in `export.validate` (driven by `export.gate.run_gate`).
"""
