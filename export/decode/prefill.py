"""Prefill graphs: the decode graph's inputs, outputs and cache, with kernels for many-token chunks.

A prompt is prefilled one request at a time, in chunks that depend on that request alone, so
the kernels that prefill it need not be the decode step's: a row's text still equals its solo
run. A prefill graph is a decode graph (same contract, same cache layout and dtype, so the
decode graph continues from the cache it leaves) whose weight matmuls are, by kind:

- `int4-fp32`: the 4-bit decode graph's own weights (same packing, block size and scales) with
  MatMulNBits `accuracy_level=1` (dequantize to fp32, then an fp32 GEMM) instead of 4 (int8 dot
  products, which AVX2 without VNNI runs slowly on many rows);
- `int8-dynamic`: `com.microsoft.DynamicQuantizeMatMul` (activations quantized per call to uint8,
  weights int8 per output column, in the 7-bit range so AVX2's u8×s8 pair sums cannot saturate);
- `fp32`: Gemm, i.e. the fp32 decode graph itself (`decode_fp32.onnx`, nothing new written).

None pads to two rows: padding exists for batch invariance of the step, and a prefill is a
single row's chunk whoever else is running.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from export.decode.checkpoint import DecodeConfig
from export.decode.files import write_manifest
from export.decode.gate import decode_prompts, decode_runner
from export.decode.graph import DecodeGraphBuilder
from export.gate import heldout
from export.gate.checks import (
    Check,
    Scorer,
    at_most,
    quality_checks,
    quantized_quality,
    teacher_forced_fn,
)
from export.gate.reference import torch_logits
from generation.contract import PREFILL_FILES
from generation.runners.decode_graph import DecodeRunner
from generation.runners.session import create_session
from generation.scheduler import PREFILL_GRAPH_CHUNK

PREFILL_KINDS = tuple(PREFILL_FILES)
# 7-bit weights: u8 activations × s8 weights, summed in pairs into int16 on AVX2, stay in range.
INT8_LIMIT = 63


def quantize_columns(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """W [N, K] → (int8 Wᵀ [K, N], float32 scales [N]), symmetric per output column.

    Args:
        weight: float32 [N, K] (PyTorch's Linear layout).

    Returns:
        The codes (|code| <= INT8_LIMIT) in DynamicQuantizeMatMul's [K, N] layout and the
        per-column scales (a zero column gets scale 1).
    """
    extreme = np.abs(weight).max(axis=1)
    scales = np.where(extreme == 0, 1.0, extreme / INT8_LIMIT).astype(np.float32)
    codes = np.clip(np.rint(weight / scales[:, None]), -INT8_LIMIT, INT8_LIMIT).astype(np.int8)
    return np.ascontiguousarray(codes.T), scales


class Int8DynamicBuilder(DecodeGraphBuilder):
    """The decode graph with DynamicQuantizeMatMul weight matmuls (the tied lm_head stays an
    fp32 Gemm on the embedding table: it runs on the kept rows only, one per prefill)."""

    def make_matmul(self, x: str, w: np.ndarray, bias: np.ndarray | None, name: str,
                    tied: str | None = None) -> str:
        """x [rows, K] @ Wᵀ (+ bias) with int8 weights (fp32 Gemm where `tied`)."""
        if tied is not None:
            return self.make_node("Gemm", [x, tied], f"{name}/Gemm", transB=1)
        codes, scales = quantize_columns(np.asarray(w, np.float32))
        inputs = [x, self.make_initializer(f"{name}.weight_q8", codes),
                  self.make_initializer(f"{name}.scales", scales), ""]
        if bias is not None:
            inputs.append(self.make_initializer(f"{name}.bias", bias.astype(np.float32)))
        return self.make_node("DynamicQuantizeMatMul", inputs, f"{name}/DynamicQuantizeMatMul",
                              domain="com.microsoft")


def build_prefill_graph(config: DecodeConfig, weights: dict[str, np.ndarray], kind: str,
                        block_size: int = 32, window_cache: bool = False) -> onnx.ModelProto:
    """Build one prefill graph.

    Args:
        config, weights: from `export.decode.checkpoint.read_checkpoint`.
        kind: one of PREFILL_KINDS.
        block_size: the 4-bit decode graph's block size (for `int4-fp32`).
        window_cache: as the decode graph it pairs with (the cache layouts must match).

    Returns:
        The graph, checked with `onnx.checker`.

    Raises:
        ValueError: an unknown kind.
    """
    if kind == "int4-fp32":
        builder = DecodeGraphBuilder(config, weights, "int4", block_size, pad_rows=False,
                                     window_cache=window_cache, accuracy_level=1)
    elif kind == "int8-dynamic":
        builder = Int8DynamicBuilder(config, weights, "fp32", block_size, pad_rows=False,
                                     window_cache=window_cache)
    elif kind == "fp32":
        builder = DecodeGraphBuilder(config, weights, "fp32", block_size, pad_rows=False,
                                     window_cache=window_cache)
    else:
        raise ValueError(f"prefill kind must be one of {', '.join(PREFILL_KINDS)}, got {kind!r}")
    return builder.build()


def write_prefill_graph(config: DecodeConfig, weights: dict[str, np.ndarray], out: Path,
                        kind: str, block_size: int, window_cache: bool) -> Path:
    """Save the prefill graph of `kind` into the export directory (`fp32`: the fp32 decode
    graph is the prefill graph, nothing is written).

    Returns:
        Its path (`PREFILL_FILES[kind]` in `out`).
    """
    path = out / PREFILL_FILES[kind]
    if kind != "fp32":
        onnx.save(build_prefill_graph(config, weights, kind, block_size, window_cache), str(path))
    return path


def mixed_scorer(runner: DecodeRunner, capacity: int) -> Scorer:
    """Teacher-forced logits as the engine makes them: the first half of a chunk prefilled in
    PREFILL_GRAPH_CHUNK pieces (the runner's prefill graph), the rest fed one token a step (its
    decode graph).

    Returns:
        `score(chunk) -> float32 logits [len(chunk), vocab]`.
    """
    cache = runner.new_cache(1, capacity)

    def score(chunk):
        cache.clear(0)
        half = max(1, len(chunk) // 2)
        found = [runner.prefill(cache, 0, list(chunk[i:min(i + PREFILL_GRAPH_CHUNK, half)]),
                                keep=min(PREFILL_GRAPH_CHUNK, half - i))
                 for i in range(0, half, PREFILL_GRAPH_CHUNK)]
        found += [runner.step(cache, np.asarray([t], dtype=np.int64)).copy() for t in chunk[half:]]
        return np.concatenate(found, axis=0)
    return score


def run_prefill_gate(model, tokenizer, config: DecodeConfig, prefill: Path, decode: Path,
                     fp32: Path, settings, log=print) -> tuple[list[Check], dict[str, float]]:
    """The prefill graph's checks: its prefill logits against PyTorch (reported), and the
    perplexity of prefilling with it and decoding with the 4-bit graph against fp32 (the int4
    limit, the same held-out text as the decode gate).

    Args:
        model, tokenizer: the PyTorch reference and its tokenizer.
        prefill, decode, fp32: the prefill graph, the decode graph it pairs with, the fp32
            decode graph (the reference scorer).
        settings: the export's `GateSettings`.

    Returns:
        (checks, quality numbers).
    """
    runner = DecodeRunner(create_session(str(decode), "cpu")[0], "cpu",
                          create_session(str(prefill), "cpu")[0])
    rows = decode_prompts(tokenizer, config, settings.texts, settings.steps)["past the window b1"]
    cache = runner.new_cache(1, len(rows[0]))
    logits = runner.prefill(cache, 0, rows[0], keep=len(rows[0]))
    diff = float(np.abs(logits - torch_logits(model, rows)[0]).max())
    checks = [at_most("prefill graph logits vs PyTorch", diff, None, f"{len(rows[0])} tokens")]
    stream = heldout.token_stream(tokenizer, settings.texts, settings.eval_tokens,
                                  tokenizer.eos_token_id)
    pieces = heldout.chunks(stream, min(settings.chunk_tokens, config.context))
    log(f"[gate] prefill graph + int4 decode: perplexity vs fp32 on {len(stream)} tokens")
    reference = teacher_forced_fn(decode_runner(fp32), config.context)
    quality = quantized_quality(reference, mixed_scorer(runner, config.context), pieces)
    checks += quality_checks("prefill graph + decode int4", quality,
                             settings.max_ppl_increase.get("int4"), settings.min_agreement)
    return checks, quality


def keep_prefill_graph(out: Path, manifest: dict | None, path: Path, kind: str, decode_gate,
                       log=print) -> dict | None:
    """Name the prefill graph in decode.json when it and the 4-bit decode graph passed; else
    delete it (a failing prefill graph is left out: the decode graph prefills instead).

    Args:
        out: the export directory.
        manifest: decode.json's content (`keep_passing_graphs`), or None.
        path, kind: the prefill graph written and its kind.
        decode_gate: the `DecodeGateResult` (its `prefill_checks`), or None (no gate).

    Returns:
        The manifest, with `prefill` when the graph was kept (decode.json rewritten then).
    """
    checks = getattr(decode_gate, "prefill_checks", None)
    files = (manifest or {}).get("files", {})
    problem = ("the 4-bit decode graph was not kept" if "int4" not in files else
               "its gate did not run" if decode_gate is not None and checks is None else
               "the fp32 decode graph was not kept" if kind == "fp32" and "fp32" not in files else
               None)
    failed = [c for c in checks or [] if not c.passed]
    for check in failed:
        log(f"[export] prefill graph: {check.line()}")
    if problem or failed:
        log(f"[export] {path.name} left out ({problem or 'it failed its gate'}): the decode "
            "graph prefills")
        if kind != "fp32" and path.exists():
            path.unlink()
        return manifest
    manifest["prefill"] = {"int4": {"file": path.name, "kind": kind, "gate": None if checks is None
                                    else {c.name: c.value for c in checks}}}
    write_manifest(out, manifest)
    log(f"[export] decode.json: prompts prefilled with {path.name} ({kind}), steps with "
        f"{files['int4']}")
    return manifest
