"""Model directory in → ONNX directory out: export, quantize, gate, report, model card."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from export import card, quantize
from export.gate import GateResult, GateSettings, run_gate

FILE_NAMES = {"fp32": "model.onnx", "int8": "model_int8.onnx", "int4": "model_int4.onnx"}


@dataclass
class ExportResult:
    """What `export_model` produced."""

    output_dir: Path
    files: dict[str, Path]
    gate: GateResult | None
    report: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.gate is None or self.gate.passed


def load_reference(model_dir: str | Path, device: str = "cpu"):
    """The PyTorch model (fp32, eval mode) and its tokenizer, as the gate's reference."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval().to(device)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return model, tokenizer


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
    return out / FILE_NAMES["fp32"]


def quantize_file(precision: str, fp32_path: Path, out: Path, int4_block_size: int = 32,
                  int4_embeddings: bool = False) -> dict:
    """Write `model_{precision}.onnx` next to the fp32 file; returns the quantizer's summary."""
    target = out / FILE_NAMES[precision]
    if precision == "int8":
        return quantize.quantize_int8(fp32_path, target)
    if precision == "int4":
        return quantize.quantize_int4(fp32_path, target, block_size=int4_block_size,
                                      embeddings=int4_embeddings)
    raise ValueError(f"unknown quantization {precision!r} (expected int8 or int4)")


def export_model(
    model_dir: str | Path,
    output_dir: str | Path,
    precisions: Sequence[str] = ("int8",),
    device: str = "cpu",
    settings: GateSettings | None = None,
    int4_block_size: int = 32,
    int4_embeddings: bool = False,
    options: dict | None = None,
    log: Callable[[str], None] = print,
) -> ExportResult:
    """Export, quantize and validate a Hugging Face causal LM directory.

    Args:
        model_dir: a local model directory (config, weights, tokenizer).
        output_dir: where the ONNX directory is written (created).
        precisions: quantized files to add: any of "int8", "int4" (empty: fp32 only).
        device: "cpu" or "cuda", for the export, the reference and the ONNX sessions.
        settings: the gate's settings; None skips the gate (benchmarks only).
        int4_block_size: MatMulNBits block size.
        int4_embeddings: also 4-bit the embedding tables in the int4 file.
        options: the resolved CLI options, recorded in the report.
        log: where progress lines go.

    Returns:
        The ExportResult; `.passed` tells whether the gate passed. The report, model card and
        all files are written either way.
    """
    model_dir, out = Path(model_dir), Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def timed(step: str, fn, *args, **kwargs):
        log(f"[export] {step} ...")
        start = time.perf_counter()
        value = fn(*args, **kwargs)
        timings[step] = round(time.perf_counter() - start, 3)
        log(f"[export] {step} done in {timings[step]:.1f} s")
        return value

    fp32 = timed("onnx export (fp32)", export_fp32, model_dir, out, device)
    files = {"fp32": fp32}
    quantizers = {}
    for precision in precisions:
        quantizers[precision] = timed(f"quantize {precision}", quantize_file, precision, fp32, out,
                                      int4_block_size, int4_embeddings)
        files[precision] = out / FILE_NAMES[precision]
    gate = None
    if settings is not None:
        model, tokenizer = timed("load PyTorch reference", load_reference, model_dir, device)
        quantized = {p: f for p, f in files.items() if p != "fp32"}
        gate = timed("validation gate", run_gate, model, tokenizer, fp32, quantized, settings, log)
    report = card.build_report(model_dir, files, quantizers, gate, timings, options or {})
    (out / "export_report.json").write_text(json.dumps(report, indent=2) + "\n")
    card.write_model_card(model_dir, out, report)
    return ExportResult(out, files, gate, report)
