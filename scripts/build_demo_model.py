"""Rebuild the bundled demo model (`demo_model/`) end to end with the project's own pipeline.

    python scripts/build_demo_model.py --data ../shared/data/arxiv-cs-abstracts.jsonl.gz \
        --work /tmp/demo_build [--max-steps 800] [--more-steps 600] [--step STEP ...]

Steps (each skipped when its output exists, so a run can be continued):
  tokenizer  a byte-level BPE (8,192 tokens) trained on the training split only
  train      `python -m finetune --from-scratch <config.json> --tokenizer <tokenizer>`
  train2     `python -m finetune --model <that model>`: a second schedule over more text
  export     `python -m export` (decode graphs fp32 / 8-bit / 4-bit, gated; decode.json)
  bundle     decode.json + its default decode graph + configs + tokenizer + card → demo_model/

Why a small BPE rather than GPT-2's 50,257 tokens: on this project's 2-core CPU, a GPT-Neo with
GPT-2's vocabulary trained at ~600 tokens/s against ~4,500 with 8,192 tokens (the output
softmax dominates a model this small), so the small vocabulary sees ~7x more text in the
same time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script: make the project's packages importable
EOS = "<|endoftext|>"
VOCAB = 8192
# A small GPT-Neo: the 125M model's layout (alternating global/local attention, window 256)
# at hidden 256 and 4 layers. 1,024 positions so the app's 512 new tokens fit after a prompt;
# training blocks are 512 tokens, so positions past 512 are untrained.
ARCH = {
    "hidden_size": 256, "num_layers": 4, "num_heads": 4, "intermediate_size": 1024,
    "attention_types": [[["global", "local"], 2]], "window_size": 256,
    "max_position_embeddings": 1024, "embed_dropout": 0.0, "attention_dropout": 0.0,
    "resid_dropout": 0.0,
}
STAGES = ("model", "model2")
APP_FILES = ("tokenizer.json", "config.json", "generation_config.json")  # + decode.json, its graph


def train_tokenizer(data: str, out: Path) -> None:
    """Train the BPE on the training split that `finetune` will use (no held-out text)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2TokenizerFast

    from finetune.sources import load_splits

    splits = load_splits(data, cache_dir=out.parent / "cache")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator((a.text for a in splits["train"]), vocab_size=VOCAB, min_frequency=2,
                            special_tokens=[EOS])
    tok = GPT2TokenizerFast(tokenizer_object=bpe._tokenizer, eos_token=EOS, bos_token=EOS,
                            unk_token=EOS)
    tok.model_max_length = ARCH["max_position_embeddings"]
    tok.save_pretrained(out)


def write_heldout(data: str, work: Path) -> Path:
    """The test split (never trained on) as JSON lines, for the export gate's perplexity."""
    from finetune.sources import load_splits

    path = work / "heldout_test.jsonl"
    splits = load_splits(data, cache_dir=work / "cache", max_eval_samples=200)
    path.write_text("".join(json.dumps({"abstract": a.text}) + "\n" for a in splits["test"]))
    return path


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)


def train(args, work: Path, stage: str) -> None:
    """Stage "model": from scratch. Stage "model2": `finetune --model <model>` continues it with a
    fresh warmup and cosine schedule (more text, when the time budget allows)."""
    if stage == "model":
        config = work / "arch.json"
        config.write_text(json.dumps(ARCH, indent=2))
        start = ["--from-scratch", str(config), "--tokenizer", str(work / "tokenizer"),
                 "--learning-rate", "1e-3", "--max-steps", str(args.max_steps)]
    else:
        start = ["--model", str(work / "model"), "--learning-rate", "5e-4",
                 "--max-steps", str(args.more_steps)]
    cmd = [sys.executable, "-m", "finetune", *start, "--data", args.data,
           "--output-dir", str(work / stage), "--block-size", "512", "--batch-size", "4",
           "--gradient-accumulation-steps", "1", "--eval-steps", str(args.eval_steps),
           "--max-eval-samples", "200", "--logging-steps", "25", "--seed", "0"]
    if any((work / stage).glob("checkpoint-*")):
        cmd.append("--resume")
    run(cmd)


def final_model(work: Path) -> Path:
    """The last training stage that finished."""
    done = [work / s for s in STAGES if (work / s / "model.safetensors").is_file()]
    return done[-1]


def bundle_files(export_dir: Path, out: Path) -> list[str]:
    """Replace `out` with what the app needs: decode.json (listing only the bundled graph),
    the default decode graph, the configs, the tokenizer and the card."""
    manifest = json.loads((export_dir / "decode.json").read_text())
    default = manifest["default"]
    manifest["files"] = {default: manifest["files"][default]}
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in (*APP_FILES, "README.md", manifest["files"][default]):
        shutil.copy(export_dir / name, out / name)
    (out / "decode.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return sorted(p.name for p in out.iterdir())


def bundle(work: Path, out: Path) -> None:
    """Copy the app's files into `out` and write the card from the measured metrics."""
    from card import write_card  # scripts/card.py

    bundle_files(work / "onnx", out)
    write_card(work, out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="arxiv-cs-abstracts.jsonl.gz (or any finetune --data)")
    parser.add_argument("--work", required=True, type=Path, help="scratch directory for every step")
    parser.add_argument("--out", type=Path, default=REPO / "demo_model", help="where the bundle goes")
    parser.add_argument("--max-steps", type=int, default=800, help="optimizer steps of 4 x 512 tokens")
    parser.add_argument("--more-steps", type=int, default=600,
                        help="steps of the second stage (0 = none)")
    parser.add_argument("--eval-steps", type=int, default=200,
                        help="evaluate (and checkpoint) every N steps; keep steps a multiple of it")
    parser.add_argument("--max-ppl-increase", type=float, default=0.02,
                        help="export gate: largest 8-bit perplexity increase over fp32 allowed")
    parser.add_argument("--step", action="append",
                        choices=["tokenizer", "train", "train2", "export", "bundle"],
                        help="run only these steps (default: all, skipping finished ones)")
    args = parser.parse_args(argv)
    steps = args.step or ["tokenizer", "train", "train2", "export", "bundle"]
    args.work.mkdir(parents=True, exist_ok=True)
    if "tokenizer" in steps and not (args.work / "tokenizer" / "tokenizer.json").is_file():
        train_tokenizer(args.data, args.work / "tokenizer")
    for step, stage in (("train", "model"), ("train2", "model2")):
        if step in steps and not (args.work / stage / "model.safetensors").is_file() \
                and (stage == "model" or args.more_steps > 0):
            train(args, args.work, stage)
    if "export" in steps and not (args.work / "onnx" / "decode.json").is_file():
        heldout = write_heldout(args.data, args.work)
        run([sys.executable, "-m", "export", "--model", str(final_model(args.work)),
             "--output-dir", str(args.work / "onnx"), "--overwrite", "--eval-text", str(heldout),
             "--max-ppl-increase-int8", str(args.max_ppl_increase)])
    if "bundle" in steps:
        bundle(args.work, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
