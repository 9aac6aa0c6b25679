"""Rebuild the bundled demo model (`demo_model/`) end to end with the project's own pipeline.

    # on a CPU with AMX / AVX-512 BF16 (bf16 + torch.compile train ~1.9x faster than fp32);
    # the bundled model's exact command (it continued the first model) is in its card
    python scripts/build_demo_model.py --data ../shared/data/arxiv-cs-abstracts.jsonl.gz \
        --work /tmp/demo_build --precision bf16 --torch-compile --batch-size 8 --max-steps 9600 \
        --eval-steps 600 --warmup-ratio 0.03
    # on a GPU: a bigger model from scratch, several epochs (pick the size by validation bits/byte)
    python scripts/build_demo_model.py --data ../shared/data/arxiv-cs-abstracts.jsonl.gz \
        --work /tmp/demo_build --arch arch.json --batch-size 32 --max-steps 0 --epochs 4 --torch-compile

Steps (each skipped when its output exists, so a run can be continued):
  tokenizer  a byte-level BPE (8,192 tokens) trained on the training split only (or, with
             --init-from, the tokenizer of the model continued)
  train      `python -m finetune --from-scratch <arch.json>` (or `--model <--init-from>`)
  train2     `python -m finetune --model <that model>`: a second schedule (--more-steps > 0)
  export     `python -m export` (decode graphs fp32 / 8-bit / 4-bit, gated; decode.json)
  measure    bits per byte and perplexity per token of each graph on 300 validation and 300
             test abstracts (`scripts/bits_per_byte.py`; each abstract scored alone)
  bundle     decode.json + its default decode graph + configs + tokenizer + card → demo_model/

--init-from continues an earlier model instead of starting from random weights. The bundled
model of the first round was continued this way from its weights as recovered from its int8
file: `git show d4d7e46^:demo_model/model_int8.onnx > /tmp/model_int8.onnx`, then
`python scripts/recover_demo_model.py --onnx /tmp/model_int8.onnx ...` (its `recovered/` dir).

Why a small BPE rather than GPT-2's 50,257 tokens: on this project's 2-core CPU, a GPT-Neo with
GPT-2's vocabulary trained at ~600 tokens/s against ~4,500 with 8,192 tokens (the output
softmax dominates a model this small), so the small vocabulary sees ~7x more text in the
same time. Size budget: the app loads the 4-bit graph, whose embedding table stays fp32
(vocab x hidden x 4 bytes), so the bundle must stay under 25 MiB at that precision.
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
STEPS = ("tokenizer", "train", "train2", "export", "measure", "bundle")
EVAL_SAMPLES = 300  # abstracts per held-out split for bits per byte
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


def copy_tokenizer(model: Path, out: Path) -> None:
    """The tokenizer of the model that --init-from continues (its tokenizer.json), saved as a
    transformers tokenizer directory for `finetune --tokenizer`."""
    from transformers import GPT2TokenizerFast

    source = model / "tokenizer.json"
    if not source.is_file():
        source = REPO / "demo_model" / "tokenizer.json"
        print(f"[build] {model} has no tokenizer.json; using {source}")
    tok = GPT2TokenizerFast(tokenizer_file=str(source), eos_token=EOS, bos_token=EOS, unk_token=EOS)
    tok.model_max_length = json.loads((model / "config.json").read_text())["max_position_embeddings"]
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
    length = (["--max-steps", str(args.max_steps)] if args.max_steps > 0
              else ["--epochs", str(args.epochs)])
    if stage == "model" and args.init_from:
        start = ["--model", str(args.init_from), "--learning-rate", str(args.learning_rate), *length]
    elif stage == "model":
        config = work / "arch.json"
        arch = json.loads(args.arch.read_text()) if args.arch else ARCH
        config.write_text(json.dumps(arch, indent=2))
        start = ["--from-scratch", str(config), "--learning-rate", str(args.learning_rate), *length]
    else:
        start = ["--model", str(work / "model"), "--learning-rate", str(args.learning_rate / 2),
                 "--max-steps", str(args.more_steps)]
    cmd = [sys.executable, "-m", "finetune", *start, "--tokenizer", str(work / "tokenizer"),
           "--data", args.data, "--output-dir", str(work / stage),
           "--block-size", str(args.block_size), "--batch-size", str(args.batch_size),
           "--gradient-accumulation-steps", "1", "--eval-steps", str(args.eval_steps),
           "--warmup-ratio", str(args.warmup_ratio), "--max-eval-samples", "200",
           "--logging-steps", "25", "--seed", "0", "--precision", args.precision]
    if args.torch_compile:
        cmd.append("--torch-compile")
    if any((work / stage).glob("checkpoint-*")):
        cmd.append("--resume")
    else:  # the command that started the run, for the card's Rebuild section
        (work / f"{stage}_command.txt").write_text(
            " ".join(["python scripts/build_demo_model.py", *args.argv]) + "\n")
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
    for key in ("files", "block_sizes", "pad_rows"):  # the gate's numbers stay for all
        manifest[key] = {p: v for p, v in manifest.get(key, {}).items() if p == default}
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in (*APP_FILES, "README.md", manifest["files"][default]):
        shutil.copy(export_dir / name, out / name)
    (out / "decode.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return sorted(p.name for p in out.iterdir())


def measure(data: str, work: Path) -> None:
    """Bits per byte and perplexity of every exported graph on the held-out splits → bpb.json."""
    from bits_per_byte import held_out
    from bits_per_byte import measure as score

    manifest = json.loads((work / "onnx" / "decode.json").read_text())
    rows = []
    for split, texts in held_out(data, EVAL_SAMPLES, work / "cache").items():
        for precision in manifest["files"]:
            row = {"split": split, **score(work / "onnx", texts, precision)}
            print(f"[measure] {split} {precision}: {row['bits_per_byte']:.4f} bits/byte, "
                  f"ppl {row['perplexity']:.2f}", flush=True)
            rows.append(row)
    (work / "bpb.json").write_text(json.dumps({"default": manifest["default"], "results": rows},
                                              indent=2) + "\n")


def bundle(args, work: Path, out: Path) -> None:
    """Copy the app's files into `out` and write the card from the measured metrics."""
    from card import write_card  # scripts/card.py

    bundle_files(work / "onnx", out)
    command = work / "model_command.txt"
    history = None
    if args.init_from:
        history = {"model": str(args.init_from), "tokens_seen": args.init_tokens_seen,
                   "minutes": args.init_minutes}
    write_card(work, out, history=history,
               command=command.read_text().strip() if command.is_file() else None)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="arxiv-cs-abstracts.jsonl.gz (or any finetune --data)")
    parser.add_argument("--work", required=True, type=Path, help="scratch directory for every step")
    parser.add_argument("--out", type=Path, default=REPO / "demo_model", help="where the bundle goes")
    parser.add_argument("--init-from", type=Path,
                        help="continue this model directory (config.json + model.safetensors) "
                             "instead of training from scratch; its tokenizer.json is used")
    parser.add_argument("--init-tokens-seen", type=int, default=0,
                        help="tokens the --init-from model had seen (for the card)")
    parser.add_argument("--init-minutes", type=float, default=0,
                        help="minutes the --init-from model had trained (for the card)")
    parser.add_argument("--arch", type=Path, help="JSON of GPTNeoConfig fields (default: the "
                        "4-layer, hidden-256 model in ARCH)")
    parser.add_argument("--max-steps", type=int, default=800,
                        help="optimizer steps of --batch-size x --block-size tokens (0: use --epochs)")
    parser.add_argument("--epochs", type=float, default=1.0, help="epochs, when --max-steps is 0")
    parser.add_argument("--more-steps", type=int, default=0,
                        help="steps of a second stage at half the learning rate (0 = none)")
    parser.add_argument("--batch-size", type=int, default=4, help="blocks per optimizer step")
    parser.add_argument("--block-size", type=int, default=512, help="tokens per block")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="peak learning rate")
    parser.add_argument("--warmup-ratio", type=float, default=0.05, help="share of steps warming up")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                        help="training precision (auto: bf16 on a GPU that has it, else fp32; "
                             "bf16 pays on CPUs with AMX / AVX-512 BF16)")
    parser.add_argument("--torch-compile", action="store_true", help="compile the model")
    parser.add_argument("--eval-steps", type=int, default=200,
                        help="evaluate (and checkpoint) every N steps; keep steps a multiple of it")
    parser.add_argument("--max-ppl-increase", type=float, default=0.02,
                        help="export gate: largest 8-bit perplexity increase over fp32 allowed")
    parser.add_argument("--step", action="append", choices=STEPS,
                        help="run only these steps (default: all, skipping finished ones)")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.init_from and not (args.init_from / "model.safetensors").is_file():
        parser.error(f"--init-from {args.init_from}: no model.safetensors there")
    if args.max_steps < 0 or args.epochs <= 0 or args.more_steps < 0:
        parser.error("--max-steps and --more-steps must be >= 0 and --epochs > 0")
    steps = args.step or list(STEPS)
    args.work.mkdir(parents=True, exist_ok=True)
    if "tokenizer" in steps and not (args.work / "tokenizer" / "tokenizer.json").is_file():
        if args.init_from:
            copy_tokenizer(args.init_from, args.work / "tokenizer")
        else:
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
    if "measure" in steps and not (args.work / "bpb.json").is_file():
        measure(args.data, args.work)
    if "bundle" in steps:
        bundle(args, args.work, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
