"""Prefill graphs against PyTorch, their cache against the decode graph's, and their place in
an export (decode.json's `prefill`, the gate that keeps or leaves them out)."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from export.decode.checkpoint import DecodeConfig, check_weights, load_weights
from export.decode.gate import DecodeGateResult
from export.decode.graph import build_decode_graph
from export.decode.nbits import quantize_blockwise
from export.decode.prefill import build_prefill_graph, keep_prefill_graph, quantize_columns
from export.gate.checks import at_most
from export.gate.reference import load_reference, torch_logits
from generation.runners.decode_graph import DecodeRunner

BLOCK = 16  # the tiny model is 32 wide
MATMULS = ("attn.attention.q_proj", "attn.attention.k_proj", "attn.attention.v_proj",
           "attn.attention.out_proj", "mlp.c_fc", "mlp.c_proj")


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    config, weights = DecodeConfig.from_dir(tiny_model_dir), load_weights(tiny_model_dir)
    check_weights(config, weights)
    return config, weights


def session(model) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def dequantized_4bit(w: np.ndarray) -> np.ndarray:
    """What MatMulNBits multiplies by: W's 4-bit codes times their block scales."""
    packed, scales = quantize_blockwise(w, 4, BLOCK)
    codes = np.stack([packed & 0xF, packed >> 4], axis=-1).reshape(w.shape[0], -1, BLOCK)
    values = (codes.astype(np.float32) - 8) * scales.reshape(w.shape[0], -1, 1)
    return values.reshape(w.shape[0], -1)[:, :w.shape[1]]


def dequantized_int8(w: np.ndarray) -> np.ndarray:
    codes, scales = quantize_columns(w)
    return (codes.T.astype(np.float32) * scales[:, None])


def reference_with(tiny_model_dir, dequantize):
    """The PyTorch model with every weight matmul (and an untied lm_head) replaced by what the
    quantized graph multiplies by; embeddings stay fp32, as in the graph."""
    import torch

    model = load_reference(tiny_model_dir)[0]
    with torch.no_grad():
        for block in model.transformer.h:
            for name in MATMULS:
                linear = block.get_submodule(name)
                linear.weight.copy_(torch.from_numpy(dequantize(linear.weight.numpy())))
        if dequantize is dequantized_4bit:  # the 4-bit graph's tied lm_head is 4-bit too
            wte = model.transformer.wte.weight.detach().numpy()
            model.lm_head.weight = torch.nn.Parameter(torch.from_numpy(dequantize(wte)))
    return model


def prompt(n: int, vocab: int, seed: int = 0) -> list[int]:
    return np.random.default_rng(seed).integers(0, vocab, n).tolist()


def test_int4_fp32_prefill_equals_pytorch_on_the_4bit_weights(tiny, tiny_model_dir):
    config, weights = tiny
    ids = prompt(40, config.vocab_size)  # past the window of 8
    run = DecodeRunner(session(build_prefill_graph(config, weights, "int4-fp32", BLOCK)))
    logits = run.prefill(run.new_cache(1, 64), 0, ids, keep=len(ids))
    expected = torch_logits(reference_with(tiny_model_dir, dequantized_4bit), [ids])[0]
    assert np.abs(logits - expected).max() <= 1e-4


def test_int8_dynamic_prefill_is_close_to_pytorch_on_the_int8_weights(tiny, tiny_model_dir):
    config, weights = tiny
    ids = prompt(40, config.vocab_size, seed=1)
    run = DecodeRunner(session(build_prefill_graph(config, weights, "int8-dynamic", BLOCK)))
    logits = run.prefill(run.new_cache(1, 64), 0, ids, keep=len(ids))
    expected = torch_logits(reference_with(tiny_model_dir, dequantized_int8), [ids])[0]
    # Activations are quantized to 8 bits per call: close, not equal; the top token agrees.
    scale = np.abs(expected).max()
    assert np.abs(logits - expected).mean() <= 0.01 * scale
    assert np.abs(logits - expected).max() <= 0.1 * scale
    assert (logits.argmax(-1) == expected.argmax(-1)).mean() >= 0.9


def test_quantize_columns_keeps_the_7bit_range_and_a_zero_column():
    w = np.random.default_rng(0).normal(size=(5, 12)).astype(np.float32)
    w[2] = 0
    codes, scales = quantize_columns(w)
    assert codes.shape == (12, 5) and np.abs(codes).max() == 63 and scales[2] == 1
    assert np.abs(codes.T * scales[:, None] - w).max() <= scales.max() / 2 + 1e-7


@pytest.mark.parametrize("kind", ["int4-fp32", "int8-dynamic"])
def test_the_decode_graph_continues_from_the_prefill_graphs_cache(tiny, kind):
    """The cache a prefill graph leaves, and the 4-bit steps on it, are as far from fp32 as
    the 4-bit graph's own (a cache in another layout would be off by its whole size)."""
    config, weights = tiny
    graphs = [build_decode_graph(config, weights, p, BLOCK, window_cache=True) for p in ("int4", "fp32")]
    decode, fp32 = (session(g) for g in graphs)
    prefill = session(build_prefill_graph(config, weights, kind, BLOCK, window_cache=True))
    runners = [DecodeRunner(decode, prefill_session=prefill), DecodeRunner(decode), DecodeRunner(fp32)]
    ids = prompt(30, config.vocab_size, seed=2)
    caches = [r.new_cache(1, 48) for r in runners]
    for runner, cache in zip(runners, caches, strict=True):
        runner.prefill(cache, 0, ids)
    for mixed, alone, ref in zip(*(c.arrays for c in caches), strict=True):
        assert mixed.shape == ref.shape and mixed.dtype == ref.dtype == np.float32
        assert np.abs(mixed - ref).mean() <= 2 * np.abs(alone - ref).mean()
    for token in ids[:6]:
        mixed, alone, ref = (r.step(c, np.array([token])).copy() for r, c in zip(runners, caches, strict=True))
        assert np.abs(mixed - ref).mean() <= 2 * np.abs(alone - ref).mean()


def test_a_prefill_graph_with_another_cache_layout_is_refused(tiny):
    config, weights = tiny
    decode = session(build_decode_graph(config, weights, "int4", BLOCK, window_cache=True))
    prefill = session(build_prefill_graph(config, weights, "int4-fp32", BLOCK, window_cache=False))
    with pytest.raises(ValueError, match="cache"):
        DecodeRunner(decode, prefill_session=prefill)


def test_an_unknown_kind_is_refused(tiny):
    with pytest.raises(ValueError, match="prefill kind"):
        build_prefill_graph(*tiny, "int2")


def test_the_export_pairs_a_gated_prefill_graph_with_the_4bit_graph(exported):
    code, out = exported
    assert code == 0
    meta = json.loads((out / "decode.json").read_text())
    entry = meta["prefill"]["int4"]
    assert entry["kind"] == "int8-dynamic" and (out / entry["file"]).is_file()
    assert entry["gate"]["prefill graph + decode int4 perplexity increase"] <= 0.03
    report = json.loads((out / "export_report.json").read_text())
    assert "prefill graph + decode int4" in report["gate"]["quality"]


def test_a_prefill_graph_that_fails_its_gate_is_left_out(tmp_path):
    path = tmp_path / "prefill_int4_fp32.onnx"
    path.write_bytes(b"graph")
    manifest = {"files": {"fp32": "decode_fp32.onnx", "int4": "decode_int4.onnx"}}
    gate = DecodeGateResult([], {}, {}, ["fp32", "int4"],
                            prefill_checks=[at_most("prefill ppl", 0.5, 0.03)])
    lines = []
    assert "prefill" not in keep_prefill_graph(tmp_path, dict(manifest), path, "int4-fp32", gate,
                                               lines.append)
    assert not path.exists() and any("left out" in line for line in lines)
    gate.prefill_checks = [at_most("prefill ppl", 0.01, 0.03)]
    path.write_bytes(b"graph")
    kept = keep_prefill_graph(tmp_path, dict(manifest), path, "int4-fp32", gate, lines.append)
    assert kept["prefill"]["int4"]["file"] == path.name
    assert json.loads((tmp_path / "decode.json").read_text())["prefill"] == kept["prefill"]
