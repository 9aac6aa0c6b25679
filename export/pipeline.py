"""Model directory in → ONNX directory out: export, quantize, gate, report, model card.

`export_model` writes an export into a directory as it goes; `export.publish.export_staged`
(what `python -m export` runs) runs it in a hidden staging directory and renames that into
place only after the gate passed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from export import card
from export.decode.checkpoint import read_checkpoint
from export.decode.files import keep_passing_graphs, write_decode_graphs
from export.decode.gate import run_decode_gate
from export.decode.prefill import keep_prefill_graph, run_prefill_gate, write_prefill_graph
from export.gate.reference import load_reference
from export.gate.settings import GateResult, GateSettings
from export.optimum.files import export_fp32, quantize_file
from export.optimum.gate import run_gate
from generation.contract import DECODE_FILES, OPTIMUM_FILES

DEFAULT_INT8_BLOCK = 128
# The prefill graph paired with the 4-bit decode graph: in a rough bench/prefill.py run (busy
# 2-core Zen 3, 125M, 200-token prompt) 0.41-0.50x the 4-bit graph's TTFT, the fastest there.
DEFAULT_PREFILL = "int8-dynamic"
REPORT = "export_report.json"
# What an earlier export may have left in its directory. An export owns it: with --overwrite
# none of these is carried into the new one (nothing stale can be loaded later); the user's
# other files are.
STALE_PATTERNS = ("*.onnx", "*.onnx_data", "*.onnx.data", "decode.json", REPORT)


@dataclass
class ExportOptions:
    """What to export, and how (the CLI's flags fill these).

    Attributes:
        model_dir: a local model directory (config, weights, tokenizer).
        output_dir: where the ONNX directory is written.
        precisions: optimum quantized files to add: any of "int8", "int4" (empty: fp32 only).
        decode: quantized decode graphs to add beside `decode_fp32.onnx` (any of "int8",
            "int4"); None: no decode graphs (a model that is not GPT-Neo).
        device: "cpu" or "cuda", for the export, the reference and the ONNX sessions.
        settings: the gate's settings; None skips the gate (benchmarks only).
        int4_block_size: MatMulNBits block size of the int4 files.
        int8_block_size: MatMulNBits block size of `decode_int8.onnx`.
        int4_embeddings: also 4-bit the embedding tables in `model_int4.onnx`.
        window_cache: local layers' caches hold only their window in the decode graphs.
        prefill: the kind of prefill graph paired with `decode_int4.onnx`
            (`export.decode.prefill.PREFILL_KINDS`), or None for none.
        recorded: the resolved CLI options, written into the report.
    """

    model_dir: str | Path
    output_dir: str | Path
    precisions: Sequence[str] = ("int8",)
    decode: Sequence[str] | None = ("int8", "int4")
    device: str = "cpu"
    settings: GateSettings | None = None
    int4_block_size: int = 32
    int8_block_size: int = DEFAULT_INT8_BLOCK
    int4_embeddings: bool = False
    window_cache: bool = True
    prefill: str | None = DEFAULT_PREFILL
    recorded: dict = field(default_factory=dict)


@dataclass
class ExportResult:
    """What an export produced (`output_dir` holds it when `.passed`)."""

    output_dir: Path
    files: dict[str, Path]
    gate: GateResult | None
    report: dict = field(default_factory=dict)
    report_path: Path | None = None

    @property
    def passed(self) -> bool:
        return self.gate is None or self.gate.passed


class _Timer:
    """Runs a step, logs its start and duration, keeps the durations for the report."""

    def __init__(self, log: Callable[[str], None]):
        self.log, self.timings = log, {}

    def __call__(self, step: str, fn, *args, **kwargs):
        self.log(f"[export] {step} ...")
        start = time.perf_counter()
        value = fn(*args, **kwargs)
        self.timings[step] = round(time.perf_counter() - start, 3)
        self.log(f"[export] {step} done in {self.timings[step]:.1f} s")
        return value


def export_model(options: ExportOptions, log: Callable[[str], None] = print,
                 checkpoint: tuple | None = None) -> ExportResult:
    """Export, quantize and validate a Hugging Face causal LM into `options.output_dir`.

    Files are written into the directory as they are made; `export_staged` publishes them
    whole instead.

    Args:
        options: what to export and how.
        log: where progress lines go.
        checkpoint: `read_checkpoint(model_dir)` when the caller has it already.

    Returns:
        The ExportResult; `.passed` tells whether the gate passed. The report, model card and
        all files are written either way (decode graphs that failed are deleted).

    Raises:
        ValueError: the checkpoint does not fit its config.json (before anything is built).
    """
    model_dir, out, o = Path(options.model_dir), Path(options.output_dir), options
    out.mkdir(parents=True, exist_ok=True)
    if o.decode is not None and checkpoint is None:
        checkpoint = read_checkpoint(model_dir)
    timed = _Timer(log)
    fp32 = timed("onnx export (fp32)", export_fp32, model_dir, out, o.device)
    files, quantizers = {"fp32": fp32}, {}
    for precision in o.precisions:
        quantizers[precision] = timed(f"quantize {precision}", quantize_file, precision, fp32, out,
                                      o.int4_block_size, o.int4_embeddings)
        files[precision] = out / OPTIMUM_FILES[precision]
    decode_paths, config, prefill = {}, None, None
    block_sizes = {"int8": o.int8_block_size, "int4": o.int4_block_size}
    if o.decode is not None:
        config, weights = checkpoint
        decode_paths = timed("decode graphs", write_decode_graphs, config, weights, out, o.decode,
                             block_sizes, o.window_cache)
        if o.prefill is not None and "int4" in decode_paths:
            prefill = timed("prefill graph", write_prefill_graph, config, weights, out, o.prefill,
                            o.int4_block_size, o.window_cache)
        del weights, checkpoint  # the gate loads the PyTorch model: do not hold both
    gate, decode_gate = None, None
    if o.settings is not None:
        gate, decode_gate = _run_gates(model_dir, files, decode_paths, config, o.settings,
                                       o.device, timed, log, prefill)
    manifest = None
    if decode_paths:
        manifest = keep_passing_graphs(config, decode_paths, decode_gate, block_sizes, out, log,
                                       o.window_cache)
        if prefill is not None:
            manifest = keep_prefill_graph(out, manifest, prefill, o.prefill, decode_gate, log)
            if "prefill" in (manifest or {}):
                files["prefill_int4"] = prefill
        files.update({f"decode_{p}": out / DECODE_FILES[p] for p in (manifest or {}).get("files", {})})
    report = card.build_report(model_dir, files, quantizers, gate, timed.timings, o.recorded)
    report["decode"] = manifest
    (out / REPORT).write_text(json.dumps(report, indent=2) + "\n")
    card.write_model_card(model_dir, out, report)
    return ExportResult(out, files, gate, report, out / REPORT)


def _run_gates(model_dir: Path, files: dict[str, Path], decode_paths: dict[str, Path], config,
               settings: GateSettings, device: str, timed, log, prefill: Path | None = None):
    """The optimum files' gate, then the decode graphs' (and the prefill graph's, which
    `decode_gate.prefill_checks` keeps apart: a failing prefill graph is left out, it does not
    fail the export); the others' checks end up in one result."""
    model, tokenizer = timed("load PyTorch reference", load_reference, model_dir, device)
    quantized = {p: f for p, f in files.items() if p != "fp32"}
    gate = timed("validation gate", run_gate, model, tokenizer, files["fp32"], quantized, settings, log)
    if not decode_paths:
        return gate, None
    decode_gate = timed("decode graph gate", run_decode_gate, model, tokenizer, config, decode_paths,
                        settings, log)
    gate.checks += decode_gate.checks
    gate.quality.update({f"decode {p}": q for p, q in decode_gate.quality.items()})
    if prefill is not None and "int4" in decode_gate.passed:
        decode_gate.prefill_checks, quality = timed(
            "prefill graph gate", run_prefill_gate, model, tokenizer, config, prefill,
            decode_paths["int4"], decode_paths["fp32"], settings, log)
        gate.quality["prefill graph + decode int4"] = quality
    return gate, decode_gate
