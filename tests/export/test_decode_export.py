"""What the export keeps of its decode graphs after the gate, and which one is the default."""

from __future__ import annotations

import json
from types import SimpleNamespace

from export.decode_export import choose_default


def test_no_decode_graph_is_written_when_fp32_fails(tmp_path, tiny_model_dir, monkeypatch):
    import export.pipeline as pipeline
    from export import validate
    from export.gate import GateResult, GateSettings

    failed = validate.at_most("decode fp32 logits short b1 prefill", 1.0, 1e-4)
    monkeypatch.setattr(pipeline, "run_gate", lambda *a, **k: GateResult([], {}, 0.0))
    monkeypatch.setattr(pipeline, "run_decode_gate", lambda *a, **k: SimpleNamespace(
        passed=[], checks=[failed], quality={}, step_ms={}))
    result = pipeline.export_model(tiny_model_dir, tmp_path, (), settings=GateSettings(),
                                   log=lambda _: None, decode=("int4",), int4_block_size=16)
    assert not result.passed and result.report["decode"] is None
    assert not list(tmp_path.glob("decode*")) and (tmp_path / "model.onnx").is_file()


def test_default_is_the_fastest_that_passed():
    assert choose_default({"fp32": 40.0, "int8": 16.0, "int4": 12.0}, ["fp32", "int8", "int4"]) == "int4"
    assert choose_default({"fp32": 40.0, "int8": 11.0, "int4": 12.0}, ["fp32", "int8", "int4"]) == "int8"
    assert choose_default({"fp32": 40.0, "int4": 12.0}, ["fp32"]) == "fp32"
    assert choose_default({}, ["fp32", "int8"]) == "int8"


def test_window_cache_flag_fixes_the_local_layers_cache_length(tmp_path, tiny_model_dir):
    import onnx

    from export.cli import main

    assert main(["--model", str(tiny_model_dir), "--output-dir", str(tmp_path), "--decode", "none",
                 "--window-cache", "--greedy-tokens", "8", "--eval-tokens", "64"]) == 0
    assert json.loads((tmp_path / "decode.json").read_text())["window_cache"] is True
    inputs = {i.name: [d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim]
              for i in onnx.load(str(tmp_path / "decode_fp32.onnx")).graph.input}
    assert inputs["past_key.0"][2] == "capacity" and inputs["past_value.1"][2] == 8  # global, local
