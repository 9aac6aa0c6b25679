"""Model directory in → ONNX directory out: export, quantize, gate, report, model card."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from export import card, decode_export, quantize
from export.decode_gate import run_decode_gate
from export.gate import GateResult, GateSettings, run_gate

FILE_NAMES = {"fp32": "model.onnx", "int8": "model_int8.onnx", "int4": "model_int4.onnx"}
DEFAULT_INT8_BLOCK = 128


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
    decode: Sequence[str] | None = ("int8", "int4"),
    int8_block_size: int = DEFAULT_INT8_BLOCK,
    checkpoint: tuple | None = None,
    window_cache: bool = True,
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
        decode: quantized decode graphs to add beside `decode_fp32.onnx` (any of "int8",
            "int4"); None: no decode graphs (a model that is not GPT-Neo).
        int8_block_size: MatMulNBits block size of `decode_int8.onnx`.
        checkpoint: `decode_export.read_checkpoint(model_dir)` when the caller has it already.
        window_cache: local layers' caches hold only their window in the decode graphs.

    Returns:
        The ExportResult; `.passed` tells whether the gate passed. The report, model card and
        all files are written either way.
    """
    model_dir, out = Path(model_dir), Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    removed = decode_export.remove_stale_files(out)
    if removed:
        log(f"[export] removed an earlier export's files from {out}: {', '.join(removed)}")
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
    decode_paths, config = {}, None
    block_sizes = {"int8": int8_block_size, "int4": int4_block_size}
    if decode is not None:
        config, weights = checkpoint or decode_export.read_checkpoint(model_dir)
        decode_paths = timed("decode graphs", decode_export.write_decode_graphs, config, weights,
                             out, decode, block_sizes, window_cache)
        del weights, checkpoint
    gate, decode_gate = None, None
    if settings is not None:
        gate, decode_gate = _run_gates(model_dir, files, decode_paths, config, settings, device,
                                       timed, log)
    manifest = None
    if decode_paths:
        manifest = _keep_passing_decode_graphs(config, decode_paths, decode_gate, block_sizes, out, log,
                                               window_cache)
        files.update({f"decode_{p}": out / name for p, name in (manifest or {}).get("files", {}).items()})
    report = card.build_report(model_dir, files, quantizers, gate, timings, options or {})
    report["decode"] = manifest
    (out / "export_report.json").write_text(json.dumps(report, indent=2) + "\n")
    card.write_model_card(model_dir, out, report)
    return ExportResult(out, files, gate, report)


def _run_gates(model_dir: Path, files: dict[str, Path], decode_paths: dict[str, Path], config,
               settings: GateSettings, device: str, timed, log):
    """The optimum files' gate, then the decode graphs'; their checks end up in one result."""
    model, tokenizer = timed("load PyTorch reference", load_reference, model_dir, device)
    quantized = {p: f for p, f in files.items() if p != "fp32"}
    gate = timed("validation gate", run_gate, model, tokenizer, files["fp32"], quantized, settings, log)
    if not decode_paths:
        return gate, None
    decode_gate = timed("decode graph gate", run_decode_gate, model, tokenizer, config, decode_paths,
                        settings, log)
    gate.checks += decode_gate.checks
    gate.quality.update({f"decode {p}": q for p, q in decode_gate.quality.items()})
    return gate, decode_gate


def _keep_passing_decode_graphs(config, paths: dict[str, Path], gate, block_sizes: dict, out: Path,
                                log, window_cache: bool = False) -> dict | None:
    """Delete the decode graphs that failed the gate, write `decode.json` for the others.

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
    manifest = decode_export.decode_manifest(config, {p: paths[p] for p in passed},
                                             decode_export.choose_default(step_ms, passed),
                                             summary, block_sizes, window_cache)
    decode_export.write_manifest(out, manifest)
    log(f"[export] decode.json: {', '.join(manifest['files'].values())}; default {manifest['default']}")
    return manifest
