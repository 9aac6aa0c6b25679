"""Training throughput: run_clm.py-style Trainer defaults (a) against the project's (b).

In one run, on one device, on the same data (abstracts of the arXiv corpus in ../shared,
in file order, packed into blocks, the same batches in the same order), from the same
initial weights and with the same tokens per optimizer step and hyperparameters:

  (a) what transformers' run_clm.py gets from Trainer's defaults: fp32, eager attention,
      torch AdamW, no compile, no loader workers;
  (b) the project's defaults for the device: `finetune.defaults` (what `python -m
      finetune` uses): precision, SDPA attention, fused AdamW, torch.compile, loader;
  --try KEY=VALUE[,KEY=VALUE]: (b) with some switches changed, e.g. `--try precision=bf16
      --try compile=on`, to choose a device's defaults by measurement.

Each variant runs in its own process (clean peak memory, its own compile cache) for
--warmup-steps + --steps optimizer steps; the figures cover the --steps after warm-up.
MFU = tokens/s x FLOPs per token / device peak, FLOPs per token = 6 N + 12 d_model
sum over layers of T_attn (finetune/speed.py; N = parameters without position embeddings,
T_attn = the block for global layers, the window for local ones); the peak is the GPU's
dense bf16 peak for every variant (or --peak-tflops), none on a CPU unless given.
It prints a table, writes JSON and a PNG of every variant's loss per step.

    python bench/train.py --device cpu --model-size demo --steps 5 --batch-size 4
    python bench/train.py --device cuda --model-size gpt-neo-125m --steps 50 --batch-size 32
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._setup import REPO_ROOT, SHARED_GPT2  # noqa: E402
from bench._train_data import corpus_blocks  # noqa: E402
from bench._train_report import loss_plot, summarize, table  # noqa: E402
from finetune.data import DataError  # noqa: E402
from finetune.defaults import SpeedChoices, device_defaults  # noqa: E402

SHARED_CORPUS = SHARED_GPT2.parent.parent / "data" / "arxiv-cs-abstracts.jsonl.gz"
DEMO_DIR = REPO_ROOT / "demo_model"
# --try keys -> SpeedChoices fields and how their values are read.
_BOOL = {"on": True, "true": True, "1": True, "off": False, "false": False, "0": False}
TRY_KEYS = {"precision": ("precision", {"bf16": "bf16", "fp32": "fp32"}),
            "attn": ("attn_implementation", {"eager": "eager", "sdpa": "sdpa"}),
            "optim": ("optim", {"adamw_torch": "adamw_torch",
                                "adamw_torch_fused": "adamw_torch_fused"}),
            "compile": ("torch_compile", _BOOL), "tf32": ("tf32", _BOOL),
            "pin": ("dataloader_pin_memory", _BOOL),
            "workers": ("dataloader_num_workers", {str(n): n for n in range(9)})}


class BenchError(ValueError):
    """A user error: one line, exit code 2."""


def run_clm_choices(device: str) -> SpeedChoices:
    """Variant (a): Trainer's defaults as run_clm.py leaves them (pinning only with a GPU)."""
    return SpeedChoices(precision="fp32", attn_implementation="eager", optim="adamw_torch",
                        torch_compile=False, tf32=False, dataloader_num_workers=0,
                        dataloader_pin_memory=device == "cuda")


def parse_try(text: str, base: SpeedChoices) -> tuple[str, SpeedChoices]:
    """("b+KEY=VALUE...", base with those switches) for one --try value.

    Raises:
        BenchError: an unknown key or value.
    """
    changes = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        if key not in TRY_KEYS:
            raise BenchError(f"--try {text}: unknown key {key!r} (known: {', '.join(TRY_KEYS)})")
        field, values = TRY_KEYS[key]
        if value.lower() not in values:
            raise BenchError(f"--try {text}: {key} takes one of {', '.join(values)}")
        changes[field] = values[value.lower()]
    return f"b+{text}", SpeedChoices(**{**base.as_dict(), **changes})


def model_spec(size: str) -> tuple[str, Path]:
    """(--from-scratch spec, default tokenizer) for --model-size.

    Raises:
        BenchError: a JSON path that does not exist.
    """
    if size == "gpt-neo-125m":
        return size, SHARED_GPT2
    if size == "demo":
        return str(DEMO_DIR / "config.json"), DEMO_DIR
    if not Path(size).is_file():
        raise BenchError(f"--model-size {size}: neither gpt-neo-125m, demo nor a JSON file")
    return size, SHARED_GPT2


def variants(args) -> list[tuple[str, SpeedChoices]]:
    """The (name, choices) to run, in order: a, b, then each --try."""
    out = []
    if "a" in args.variants:
        out.append(("a", run_clm_choices(args.device)))
    base = device_defaults(args.device)
    if "b" in args.variants:
        out.append(("b", base))
    return out + [parse_try(text, base) for text in args.tries]


def run_one(spec: dict, workdir: Path) -> dict:
    """Run bench/_train_variant.py's run_variant in a fresh process.

    Raises:
        RuntimeError: the variant's process failed (its last stderr lines in the message).
    """
    spec_path, out_path = workdir / f"{spec['name']}.spec.json", workdir / f"{spec['name']}.out.json"
    spec_path.write_text(json.dumps(spec))
    code = (f"import json, sys; sys.path.insert(0, {str(REPO_ROOT)!r}); "
            "from bench._train_variant import run_variant; "
            f"open({str(out_path)!r}, 'w').write(json.dumps(run_variant(json.load(open({str(spec_path)!r})))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"variant {spec['name']} failed (exit {proc.returncode}):\n{tail}")
    return json.loads(out_path.read_text())


def machine(device: str) -> dict:
    """What ran the benchmark."""
    import torch
    import transformers

    from finetune.train import _cpu_name

    return {"device": device, "cpu": _cpu_name(), "cores_visible": len(os.sched_getaffinity(0)),
            "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
            "load_average_1m_at_start": os.getloadavg()[0], "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python bench/train.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to train")
    p.add_argument("--model-size", default="gpt-neo-125m",
                   help="gpt-neo-125m, demo (demo_model/config.json's shape) or a GPTNeoConfig JSON")
    p.add_argument("--steps", type=int, default=5, help="measured optimizer steps after warm-up")
    p.add_argument("--warmup-steps", type=int, default=2,
                   help="optimizer steps run first and not measured (compilation happens here)")
    p.add_argument("--batch-size", type=int, default=4, help="blocks per forward pass")
    p.add_argument("--gradient-accumulation-steps", type=int, default=1,
                   help="forward passes per optimizer step (the same for every variant)")
    p.add_argument("--block-size", type=int, default=512, help="tokens per block")
    p.add_argument("--learning-rate", type=float, default=6e-4, help="peak LR (cosine schedule)")
    p.add_argument("--seed", type=int, default=0, help="weights init seed (every variant)")
    p.add_argument("--variants", nargs="+", choices=("a", "b"), default=["a", "b"],
                   help="which of the two reference variants to run")
    p.add_argument("--try", dest="tries", action="append", default=[], metavar="KEY=VALUE[,...]",
                   help=f"also run (b) with these switches changed; keys: {', '.join(TRY_KEYS)}")
    p.add_argument("--data", default=str(SHARED_CORPUS), help=".jsonl[.gz] of abstracts")
    p.add_argument("--tokenizer", help="tokenizer dir (default: GPT-2 from ../shared; demo: its own)")
    p.add_argument("--peak-tflops", type=float, help="device peak TFLOP/s for MFU")
    p.add_argument("--json", help="result file (default bench/results/train_<size>_<device>_<time>.json)")
    p.add_argument("--png", help="loss plot (default: the JSON path with .png)")
    return p


def check(args) -> None:
    """Raises BenchError for the first impossible setting."""
    for name in ("steps", "batch_size", "gradient_accumulation_steps", "block_size"):
        if getattr(args, name) < 1:
            raise BenchError(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup_steps < 0:
        raise BenchError("--warmup-steps must be >= 0")
    if not Path(args.data).is_file():
        raise BenchError(f"--data {args.data}: no such file (the arXiv corpus lives in ../shared)")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise BenchError("--device cuda: no CUDA GPU is visible")


def run_all(runs: list[tuple[str, SpeedChoices]], common: dict, blocks) -> tuple[list, list]:
    """(results, failures) of every variant, each in its own process, on the same blocks."""
    import numpy as np

    results, failed = [], []
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "blocks.npy", blocks)
        for name, choices in runs:
            print(f"bench/train.py: running {name} ({choices.as_dict()})", flush=True)
            spec = {**common, "name": name, "speed": choices.as_dict(),
                    "blocks": str(Path(tmp) / "blocks.npy")}
            try:
                results.append(run_one(spec, Path(tmp)))
            except RuntimeError as err:  # the other variants still run (a GPU lease is short)
                print(f"error: {err}", file=sys.stderr)
                failed.append({"name": name, "speed": choices.as_dict(), "error": str(err)})
    return results, failed


def output_paths(args) -> tuple[Path, Path]:
    """--json (default: a new timestamped file under bench/results/) and --png beside it."""
    size = Path(args.model_size).stem if args.model_size.endswith(".json") else args.model_size
    stamp = time.strftime("%Y%m%d-%H%M%S")
    default = REPO_ROOT / "bench" / "results" / f"train_{size}_{args.device}_{stamp}.json"
    json_path = Path(args.json or default)
    return json_path, Path(args.png or json_path.with_suffix(".png"))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit code (2 for user errors, 1 if a variant fails)."""
    args = build_parser().parse_args(argv)
    try:
        check(args)
        scratch, default_tok = model_spec(args.model_size)
        runs = variants(args)
        tokenizer = args.tokenizer or str(default_tok)
        n_blocks = (args.warmup_steps + args.steps) * args.batch_size * args.gradient_accumulation_steps
        blocks = corpus_blocks(Path(args.data), tokenizer, args.block_size, n_blocks)
    except (BenchError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    info = machine(args.device)
    common = {"device": args.device, "model": scratch, "tokenizer": tokenizer,
              "block_size": args.block_size, "batch_size": args.batch_size,
              "gradient_accumulation_steps": args.gradient_accumulation_steps,
              "steps": args.steps, "warmup_steps": args.warmup_steps,
              "learning_rate": args.learning_rate, "seed": args.seed}
    results, failed = run_all(runs, common, blocks)
    if not results:
        return 1
    summarize(results, info, args.peak_tflops)
    text = table(results, info, common, args.model_size)
    text += "".join(f"\nFAILED: {f['name']}: {f['error'].splitlines()[-1]}" for f in failed)
    print(text)
    json_path, png_path = output_paths(args)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    settings = {**common, "model_size": args.model_size, "data": Path(args.data).name}
    json_path.write_text(json.dumps({"machine": info, "settings": settings, "table": text,
                                     "variants": results, "failed": failed}, indent=2) + "\n")
    loss_plot(results, png_path, args.warmup_steps, f"{args.model_size} on {info['gpu'] or info['cpu']}")
    print(f"bench/train.py: wrote {json_path} and {png_path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
