"""The gate's checks against references, and proof that each one can fail."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from export.gate import checks as validate
from export.gate import heldout
from export.gate.reference import position_ids_from_mask
from export.gate.settings import GateSettings
from export.optimum import gate, quantize


def perturb_initializer(path: Path, name_part: str = "MatMul", scale: float = 1.05) -> str:
    """Scale the first weight initializer whose name contains `name_part`, in place."""
    model = onnx.load(str(path))
    init = next(i for i in model.graph.initializer if name_part in i.name and len(i.dims) == 2)
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * scale, init.name))
    onnx.save(model, str(path))
    return init.name


def scorer(path: Path):
    """Teacher-forced logits [len, vocab] of a token list on an optimum file, through the
    engine's runner."""
    return validate.teacher_forced_fn(gate.open_runner(path), 256)


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    from export.gate.reference import load_reference

    return load_reference(tiny_model_dir)


@pytest.fixture()
def altered_onnx(tiny_onnx_dir, tmp_path) -> Path:
    path = tmp_path / "model.onnx"
    shutil.copy(tiny_onnx_dir / "model.onnx", path)
    perturb_initializer(path)
    return path


def test_gate_passes_on_the_faithful_export(reference, tiny_onnx_dir):
    model, tok = reference
    result = gate.run_gate(model, tok, tiny_onnx_dir / "model.onnx", {}, GateSettings(),
                           log=lambda _: None)
    assert result.passed, [c.line() for c in result.failures]
    assert len(result.checks) == 7


def test_gate_refuses_an_altered_graph_with_the_numbers(reference, altered_onnx):
    model, tok = reference
    result = gate.run_gate(model, tok, altered_onnx, {}, GateSettings(), log=lambda _: None)
    assert not result.passed
    failed = {c.name for c in result.failures}
    assert {"fp32 logits short b1 prefill", "fp32 logits left-padded b2 cached steps"} <= failed
    for check in result.failures:
        if check.name.startswith("fp32 logits"):
            assert check.value > 1e-4
            assert f"{check.value:.4g}" in check.line() and check.line().startswith("FAIL")


def test_long_prompt_exceeds_the_local_window(reference):
    model, tok = reference
    prompts = gate.gate_prompts(tok, model.config, heldout.BUILTIN_TEXT, 32, 3)
    assert len(prompts["long b1"][0]) > model.config.window_size
    padded = prompts["left-padded b2"]
    assert len(padded[0]) > model.config.window_size > len(padded[1])


def test_quality_is_exact_against_itself_and_not_against_an_altered_file(tiny_onnx_dir, altered_onnx):
    ref = scorer(tiny_onnx_dir / "model.onnx")
    chunks = [list(range(3, 40)), list(range(50, 90))]
    same = validate.quantized_quality(ref, scorer(tiny_onnx_dir / "model.onnx"), chunks)
    assert same["ppl_increase"] == pytest.approx(0.0, abs=1e-12) and same["agreement"] == 1.0
    other = validate.quantized_quality(ref, scorer(altered_onnx), chunks)
    assert other["ppl_increase"] != pytest.approx(0.0, abs=1e-6)
    checks = validate.quality_checks("int8", other, max_ppl_increase=-1.0, min_agreement=1.01)
    assert [c.passed for c in checks] == [False, False]


def test_perplexity_matches_torch_cross_entropy(reference, tiny_onnx_dir):
    import torch

    model, _ = reference
    chunk = list(range(3, 60))
    q = validate.quantized_quality(*(scorer(tiny_onnx_dir / "model.onnx"),) * 2, [chunk])
    with torch.no_grad():
        loss = model(torch.tensor([chunk]), labels=torch.tensor([chunk])).loss.item()
    assert q["ppl"] == pytest.approx(np.exp(loss), rel=1e-4)


def test_position_ids_follow_transformers_for_left_padding():
    import torch

    mask = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    t = torch.tensor(mask)
    want = (t.long().cumsum(-1) - 1).masked_fill(t == 0, 1).numpy()
    np.testing.assert_array_equal(position_ids_from_mask(mask), want)


def test_nan_never_passes():
    assert not validate.at_most("x", float("nan"), 1.0).passed
    assert not validate.at_least("x agreement", float("nan"), 0.0).passed
    assert validate.at_most("x", 5.0, None).passed


def test_untying_keeps_the_function(tiny_onnx_dir, tmp_path):
    model = onnx.load(str(tiny_onnx_dir / "model.onnx"))
    before = len(quantize.weight_matmuls(model))
    assert quantize.untie_transposed_weights(model) == 1
    assert len(quantize.weight_matmuls(model)) == before + 1  # lm_head now has a weight
    onnx.save(model, str(tmp_path / "untied.onnx"))
    ids = np.array([[4, 9, 2, 33, 7]])
    a = scorer(tiny_onnx_dir / "model.onnx")(ids[0])
    b = scorer(tmp_path / "untied.onnx")(ids[0])
    np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("flags, expected", [
    ("fpu sse avx2 avx512f avx512bw avx512_vnni", "avx512_vnni"),
    ("fpu sse avx2 avx512f avx512bw", "avx512"),
    ("fpu sse avx2", "avx2"),
])
def test_cpu_isa_reads_the_flags(tmp_path, flags, expected):
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    assert quantize.cpu_isa(info) == expected


def test_heldout_loaders(tmp_path):
    jsonl = tmp_path / "a.jsonl.gz"
    with gzip.open(jsonl, "wt") as f:
        f.write(json.dumps({"abstract": "first doc"}) + "\n\n" + json.dumps({"text": "second"}) + "\n")
    assert heldout.load_texts(jsonl) == ["first doc", "second"]
    txt = tmp_path / "a.txt"
    txt.write_text("para one\n\npara two\n")
    assert heldout.load_texts(txt) == ["para one", "para two"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        heldout.load_texts(bad)
    assert heldout.chunks(list(range(10)), 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_int4_embeddings_option_quantizes_the_tables(tiny_onnx_dir, tmp_path):
    plain, small = tmp_path / "plain.onnx", tmp_path / "small.onnx"
    quantize.quantize_int4(tiny_onnx_dir / "model.onnx", plain, block_size=16)
    summary = quantize.quantize_int4(tiny_onnx_dir / "model.onnx", small, block_size=16,
                                     embeddings=True)
    assert summary["embeddings"] is True
    assert quantize.count_ops(plain)["GatherBlockQuantized"] == 0
    assert quantize.count_ops(small)["GatherBlockQuantized"] == 2  # token + position tables
    assert small.stat().st_size < plain.stat().st_size
    ids = np.array([[4, 9, 2, 33, 7]])
    ref = scorer(plain)(ids[0])
    got = scorer(small)(ids[0])
    assert np.isfinite(got).all() and 0 < np.abs(got - ref).max() < np.abs(ref).max()


def test_check_lines_show_the_direction_of_the_limit():
    assert "(limit >= 0.9)" in validate.at_least("int8 greedy-token agreement", 0.5, 0.9).line()
    line = validate.at_most("fp32 logits x prefill", 2e-3, 1e-4, "1x12 tokens").line()
    assert line == "FAIL fp32 logits x prefill: 0.002 (limit <= 0.0001) [1x12 tokens]"
