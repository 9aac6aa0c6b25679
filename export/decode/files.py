"""Writing the decode graphs and `decode.json` into an export directory (the contract's files:
names and format from `generation.contract`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import onnx

from export.decode.checkpoint import DecodeConfig
from export.decode.graph import build_decode_graph
from generation.contract import DECODE_FILES, DECODE_FORMAT, DECODE_JSON, PRECISIONS


def write_decode_graphs(config: DecodeConfig, weights: dict, out: Path, precisions: Sequence[str],
                        block_sizes: dict[str, int], window_cache: bool = False) -> dict[str, Path]:
    """Build and save `decode_{precision}.onnx` for each precision (fp32 always first).

    Args:
        config, weights: from `export.decode.checkpoint.read_checkpoint`.
        out: the export directory.
        precisions: any of "int8", "int4" (fp32 is always written: the gate's reference).
        block_sizes: MatMulNBits block size per quantized precision.
        window_cache: local layers' caches hold only their window (see `DecodeGraphBuilder`).

    Returns:
        {precision: path}.
    """
    paths = {}
    for precision in ["fp32", *[p for p in PRECISIONS[1:] if p in precisions]]:
        model = build_decode_graph(config, weights, precision, block_sizes.get(precision, 32),
                                   window_cache=window_cache)
        paths[precision] = out / DECODE_FILES[precision]
        onnx.save(model, str(paths[precision]))
    return paths


def decode_manifest(config: DecodeConfig, files: dict[str, Path], default: str, gate: dict | None,
                    block_sizes: dict[str, int], window_cache: bool = False) -> dict:
    """The contract's `decode.json` content."""
    return {
        "format": DECODE_FORMAT,
        "files": {p: path.name for p, path in files.items()},
        "default": default,
        "layers": config.layers,
        "heads": config.heads,
        "head_dim": config.head_dim,
        "windows": list(config.windows),
        "vocab_size": config.vocab_size,
        "context": config.context,
        "block_sizes": {p: block_sizes[p] for p in files if p in block_sizes},
        "pad_rows": {p: p != "fp32" for p in files},  # see export/decode/graph.py
        # true: local layers' past/present are [rows, heads, window, head_dim] (fixed in the graph)
        "window_cache": window_cache,
        "gate": gate,
    }


def choose_default(step_ms: dict[str, float], passed: Sequence[str]) -> str:
    """The fastest precision that passed (by the gate's CPU time a step; without times, the
    expected order int4 < int8 < fp32)."""
    timed = [p for p in passed if p in step_ms]
    if timed:
        return min(timed, key=step_ms.__getitem__)
    return next(p for p in ("int4", "int8", "fp32") if p in passed)


def write_manifest(out: Path, manifest: dict) -> Path:
    """Write `decode.json`."""
    path = out / DECODE_JSON
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def keep_passing_graphs(config: DecodeConfig, paths: dict[str, Path], gate, block_sizes: dict,
                        out: Path, log: Callable[[str], None],
                        window_cache: bool = False) -> dict | None:
    """Delete the decode graphs that failed the gate, write `decode.json` for the others.

    Args:
        gate: the `DecodeGateResult`, or None (no gate: every graph is kept).

    Returns:
        decode.json's content, or None when no graph passed (no decode.json then).
    """
    passed = list(paths) if gate is None else gate.passed
    for precision, path in paths.items():
        if precision not in passed:
            log(f"[export] {path.name} failed the gate: not written")
            path.unlink()
    if not passed:
        return None
    step_ms = {} if gate is None else gate.step_ms
    summary = None if gate is None else {
        "passed": all(c.passed for c in gate.checks),
        "checks": {c.name: c.value for c in gate.checks},
        "quality": gate.quality,
        "cpu_ms_per_step_batch1": step_ms,  # 1 thread; for choosing the default only
    }
    manifest = decode_manifest(config, {p: paths[p] for p in passed},
                               choose_default(step_ms, passed), summary, block_sizes, window_cache)
    write_manifest(out, manifest)
    log(f"[export] decode.json: {', '.join(manifest['files'].values())}; default {manifest['default']}")
    return manifest
