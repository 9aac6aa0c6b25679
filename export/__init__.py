"""Model directory in → validated, quantized ONNX directory out (optimum, onnxruntime).

Three jobs, one folder each: `export.optimum` (optimum's model.onnx, its quantizations and
their gate), `export.decode` (the engine's decode graphs, their gate and decode.json) and
`export.gate` (what both gates share). `export.pipeline.export_model` runs them; `python -m
export` (`export.cli`) publishes the result whole, only after the gate passed.
"""
