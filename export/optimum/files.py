"""optimum's files in an export directory: `model.onnx` and its quantizations (names from
`generation.contract`)."""

from __future__ import annotations

from pathlib import Path

from export.optimum import quantize
from generation.contract import OPTIMUM_FILES


def export_fp32(model_dir: Path, out: Path, device: str = "cpu") -> Path:
    """Export with optimum (task text-generation-with-past) into `out/model.onnx`.

    Also makes sure `out` holds `tokenizer.json` and `generation_config.json` (optimum copies
    them when the input has them; otherwise they are written from the tokenizer/config).

    Returns:
        The path of `model.onnx`.
    """
    from optimum.exporters.onnx import main_export
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    # optimum's own validation compares on one random input; the gate does much more.
    main_export(str(model_dir), output=out, task="text-generation-with-past", device=device,
                do_validation=False)
    if not (out / "tokenizer.json").exists():
        AutoTokenizer.from_pretrained(model_dir, use_fast=True).save_pretrained(out)
    if not (out / "generation_config.json").exists():
        GenerationConfig.from_model_config(AutoConfig.from_pretrained(model_dir)).save_pretrained(out)
    return out / OPTIMUM_FILES["fp32"]


def quantize_file(precision: str, fp32_path: Path, out: Path, int4_block_size: int = 32,
                  int4_embeddings: bool = False) -> dict:
    """Write `model_{precision}.onnx` next to the fp32 file; returns the quantizer's summary."""
    if precision == "int8":
        return quantize.quantize_int8(fp32_path, out / OPTIMUM_FILES[precision])
    if precision == "int4":
        return quantize.quantize_int4(fp32_path, out / OPTIMUM_FILES[precision],
                                      block_size=int4_block_size, embeddings=int4_embeddings)
    raise ValueError(f"unknown quantization {precision!r} (expected int8 or int4)")
