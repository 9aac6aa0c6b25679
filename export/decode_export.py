"""Writing the decode graphs and `decode.json` into an export directory (the contract's files)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import onnx

from export.decode_config import DecodeConfig, check_weights, load_weights
from export.decode_graph import build_decode_graph

DECODE_PRECISIONS = ("fp32", "int8", "int4")
DECODE_FILES = {p: f"decode_{p}.onnx" for p in DECODE_PRECISIONS}
# What an earlier export may have left in its directory; an export owns it, so with
# --overwrite these go before anything is written (nothing stale can be loaded later).
STALE_PATTERNS = ("*.onnx", "*.onnx_data", "*.onnx.data", "decode.json", "export_report.json")


def read_checkpoint(model_dir: str | Path) -> tuple[DecodeConfig, dict]:
    """The model's shape and tensors, checked (ValueError, one line, when unusable)."""
    config = DecodeConfig.from_dir(model_dir)
    weights = load_weights(model_dir)
    check_weights(config, weights)
    return config, weights


def remove_stale_files(out: Path) -> list[str]:
    """Delete an earlier export's ONNX files, decode.json and report from `out`.

    Returns:
        The names removed.
    """
    removed = []
    for pattern in STALE_PATTERNS:
        for path in sorted(out.glob(pattern)):
            if path.is_file():
                path.unlink()
                removed.append(path.name)
    return removed


def write_decode_graphs(config: DecodeConfig, weights: dict, out: Path, precisions: Sequence[str],
                        block_sizes: dict[str, int]) -> dict[str, Path]:
    """Build and save `decode_{precision}.onnx` for each precision (fp32 always first).

    Args:
        config, weights: from `read_checkpoint`.
        out: the export directory.
        precisions: any of "int8", "int4" (fp32 is always written: the gate's reference).
        block_sizes: MatMulNBits block size per quantized precision.

    Returns:
        {precision: path}.
    """
    paths = {}
    for precision in ["fp32", *[p for p in DECODE_PRECISIONS[1:] if p in precisions]]:
        model = build_decode_graph(config, weights, precision, block_sizes.get(precision, 32))
        paths[precision] = out / DECODE_FILES[precision]
        onnx.save(model, str(paths[precision]))
    return paths


def decode_manifest(config: DecodeConfig, files: dict[str, Path], default: str, gate: dict | None,
                    block_sizes: dict[str, int]) -> dict:
    """The contract's `decode.json` content."""
    return {
        "format": 1,
        "files": {p: path.name for p, path in files.items()},
        "default": default,
        "layers": config.layers,
        "heads": config.heads,
        "head_dim": config.head_dim,
        "windows": list(config.windows),
        "vocab_size": config.vocab_size,
        "context": config.context,
        "block_sizes": {p: block_sizes[p] for p in files if p in block_sizes},
        "pad_rows": {p: p != "fp32" for p in files},  # see export/decode_graph.py
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
    path = out / "decode.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path
