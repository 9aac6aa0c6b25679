"""What bench/decode.py measures on: the machine, the model directories, the prompts."""

from __future__ import annotations

import os
import platform
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_GPT2 = Path(os.environ.get("NEO_SHARED_DIR", REPO_ROOT.parent / "shared")) / "tokenizers" / "gpt2"
DEFAULT_CACHE = Path(os.environ.get("NEO_BENCH_CACHE", Path.home() / ".cache" / "neo-xscience" / "bench"))

# The real GPT-Neo-125M architecture (EleutherAI/gpt-neo-125M's config.json).
ARCHITECTURES = {
    "gpt-neo-125m": dict(vocab_size=50257, max_position_embeddings=2048, hidden_size=768,
                         num_layers=12, num_heads=12, attention_types=[[["global", "local"], 6]],
                         window_size=256, intermediate_size=None, bos_token_id=50256,
                         eos_token_id=50256),
}


def machine_info(threads: int) -> dict:
    """CPU model, cores, load, library versions and ONNX Runtime providers."""
    import onnxruntime as ort
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores_visible": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "threads": threads,
        "load_average_1m_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "ort_providers": ort.get_available_providers(),
    }


def build_random_model(arch: str, out: Path, tokenizer_dir: Path, seed: int = 0) -> Path:
    """Save a randomly initialised model of a known architecture with a real tokenizer.

    Args:
        arch: a key of ARCHITECTURES.
        out: the model directory to write.
        tokenizer_dir: GPT-2 vocab.json + merges.txt (or any saved GPT-2 tokenizer).
        seed: torch seed for the weights.

    Returns:
        `out`.
    """
    import torch
    from transformers import GenerationConfig, GPT2TokenizerFast, GPTNeoConfig, GPTNeoForCausalLM

    config = GPTNeoConfig(**ARCHITECTURES[arch], use_cache=True)
    torch.manual_seed(seed)
    model = GPTNeoForCausalLM(config).eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok = GPT2TokenizerFast.from_pretrained(tokenizer_dir)
    tok.save_pretrained(out)
    GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
                     pad_token_id=config.eos_token_id).save_pretrained(out)
    (out / "README.md").write_text(
        f"# {arch} with random weights\n\nThe real architecture with random weights, built by "
        "bench/decode.py so the real size can be measured offline. Not a language model.\n")
    return out


def prepare_random_init(arch: str, cache: Path, tokenizer_dir: Path, gate: bool,
                        log=print) -> tuple[Path, Path]:
    """Build (once) and export (once) a random-init model in the cache.

    Returns:
        (PyTorch model dir, ONNX export dir with model.onnx, model_int8.onnx, model_int4.onnx
        and the decode graphs with decode.json).
    """
    torch_dir, onnx_dir = cache / arch / "pytorch", cache / arch / "onnx"
    if not (torch_dir / "config.json").exists():
        log(f"[bench] building random-init {arch} in {torch_dir}")
        build_random_model(arch, torch_dir, tokenizer_dir)
    ensure_export(torch_dir, onnx_dir, gate, log)
    return torch_dir, onnx_dir


def ensure_export(torch_dir: Path, onnx_dir: Path, gate: bool, log=print) -> Path:
    """Export + quantize (int8, int4) `torch_dir` into `onnx_dir` unless already done there."""
    from export.gate.settings import GateSettings
    from export.pipeline import ExportOptions
    from export.publish import export_staged
    from rundir import DirectoryLock

    wanted = ("model.onnx", "model_int8.onnx", "model_int4.onnx", "decode.json", "export_report.json")
    if all((onnx_dir / name).exists() for name in wanted):
        log(f"[bench] reusing the export in {onnx_dir}")
        return onnx_dir
    settings = GateSettings(eval_tokens=512) if gate else None
    with DirectoryLock(onnx_dir, what="export"):  # published whole, like python -m export
        result = export_staged(ExportOptions(torch_dir, onnx_dir, ("int8", "int4"), settings=settings),
                               log=log)
    if not result.passed:
        raise SystemExit("the export failed its validation gate: "
                         + "; ".join(c.line() for c in result.gate.failures))
    return onnx_dir


def prompt_rows(tokenizer, batch: int, length: int) -> list[list[int]]:
    """`batch` different prompts of exactly `length` tokens, cut from the built-in text."""
    from export.gate import heldout

    stream = heldout.token_stream(tokenizer, heldout.BUILTIN_TEXT, length * batch + 7 * batch,
                                  tokenizer.eos_token_id)
    return [stream[i * (length + 7):i * (length + 7) + length] for i in range(batch)]


def write_result(path: Path, script: str, argv: list[str] | None, machine: dict, rows: list,
                 tag: str) -> Path:
    """Write a benchmark's JSON (its command line, machine, rows, UTC date) and say where.

    Args:
        path: the JSON file (its folder is created).
        script: the script's path as run, e.g. "bench/prefill.py".
        argv: the arguments main() got (None: sys.argv's).
        machine, rows: what the benchmark measured.
        tag: the prefix of the printed line, e.g. "prefill".

    Returns:
        `path`.
    """
    import json
    import sys
    import time

    path.parent.mkdir(parents=True, exist_ok=True)
    args = sys.argv[1:] if argv is None else argv
    path.write_text(json.dumps({"command": f"python {script} " + " ".join(args), "machine": machine,
                                "rows": rows, "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
                               indent=2) + "\n")
    print(f"[{tag}] wrote {path}")
    return path
