"""What the export keeps of its decode graphs after the gate, and which one is the default."""

from __future__ import annotations

import json
from types import SimpleNamespace

from export.decode.files import choose_default


def test_no_decode_graph_is_written_when_fp32_fails(tmp_path, tiny_model_dir, monkeypatch):
    import export.pipeline as pipeline
    from export.gate.checks import at_most
    from export.gate.settings import GateResult, GateSettings

    failed = at_most("decode fp32 logits short b1 prefill", 1.0, 1e-4)
    monkeypatch.setattr(pipeline, "run_gate", lambda *a, **k: GateResult([], {}, 0.0))
    monkeypatch.setattr(pipeline, "run_decode_gate", lambda *a, **k: SimpleNamespace(
        passed=[], checks=[failed], quality={}, step_ms={}))
    options = pipeline.ExportOptions(tiny_model_dir, tmp_path, (), decode=("int4",),
                                     settings=GateSettings(), int4_block_size=16)
    result = pipeline.export_model(options, log=lambda _: None)
    assert not result.passed and result.report["decode"] is None
    assert not list(tmp_path.glob("decode*")) and (tmp_path / "model.onnx").is_file()
    assert not list(tmp_path.glob("prefill*"))  # nor the prefill graph paired with them


def test_default_is_the_fastest_that_passed():
    assert choose_default({"fp32": 40.0, "int8": 16.0, "int4": 12.0}, ["fp32", "int8", "int4"]) == "int4"
    assert choose_default({"fp32": 40.0, "int8": 11.0, "int4": 12.0}, ["fp32", "int8", "int4"]) == "int8"
    assert choose_default({"fp32": 40.0, "int4": 12.0}, ["fp32"]) == "fp32"
    assert choose_default({}, ["fp32", "int8"]) == "int8"


def cache_lengths(path) -> list:
    """The length axis of each past_* input of a decode graph (an int, or 'capacity')."""
    import onnx

    return [i.type.tensor_type.shape.dim[2].dim_value or i.type.tensor_type.shape.dim[2].dim_param
            for i in onnx.load(str(path)).graph.input if i.name.startswith("past_")]


def test_window_caches_by_default_and_no_window_cache_turns_them_off(exported, tmp_path, tiny_model_dir):
    from export.cli import main

    _, default = exported  # `python -m export` with no cache flag
    assert json.loads((default / "decode.json").read_text())["window_cache"] is True
    for name in ("decode_fp32.onnx", "decode_int4.onnx"):
        assert cache_lengths(default / name) == ["capacity"] * 2 + [8] * 2  # global, local (window 8)
    assert main(["--model", str(tiny_model_dir), "--output-dir", str(tmp_path), "--decode", "none",
                 "--no-window-cache", "--greedy-tokens", "8", "--eval-tokens", "64"]) == 0
    assert json.loads((tmp_path / "decode.json").read_text())["window_cache"] is False
    assert cache_lengths(tmp_path / "decode_fp32.onnx") == ["capacity"] * 4
