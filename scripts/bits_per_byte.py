"""Bits per byte (and perplexity per token) of a model on held-out abstracts.

    python scripts/bits_per_byte.py --model demo_model \
        --data ../shared/data/arxiv-cs-abstracts.jsonl.gz --split test --samples 300

Each abstract is scored alone through `Engine.score` (first token conditioned on EOS):
-sum(log2 p) over its tokens / its UTF-8 bytes, averaged over the abstracts. The split is
`python -m finetune`'s hash split, so these abstracts were never trained on. The measure does
not depend on the tokenizer: models with different vocabularies compare fairly.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script: make the project's packages importable


def held_out(data: str, samples: int, cache_dir: Path) -> dict[str, list[str]]:
    """The first `samples` abstracts of finetune's "validation" and "test" splits (one load)."""
    from finetune.sources import load_splits

    splits = load_splits(data, cache_dir=cache_dir, max_eval_samples=samples, log=lambda *_: None)
    return {split: [a.text for a in splits[split]] for split in ("validation", "test")}


def measure(model: str | Path, texts: list[str], precision: str | None = None) -> dict:
    """bits_per_byte of `model` (a directory Engine.load takes) at `precision` on `texts`."""
    from generation import Engine
    from generation.score import bits_per_byte

    engine = Engine.load(model, precision=precision)
    result = bits_per_byte(engine.score, texts)
    result["precision"] = engine.info["precision"]
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(REPO / "demo_model"),
                        help="a model directory the engine loads (decode.json or an optimum export)")
    parser.add_argument("--data", required=True, help="the abstracts (any `python -m finetune --data`)")
    parser.add_argument("--split", nargs="+", default=["validation", "test"],
                        choices=["validation", "test"], help="held-out splits to score")
    parser.add_argument("--samples", type=int, default=300, help="abstracts per split")
    parser.add_argument("--precision", nargs="+", default=[None],
                        help="decode graphs to score (fp32 int8 int4; default: decode.json's default)")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/neo-xscience-bpb"),
                        help="download cache for --data multi-xscience")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.samples < 1:
        parser.error("--samples must be at least 1")
    rows = []
    texts_of = held_out(args.data, args.samples, args.cache_dir)
    for split in args.split:
        texts = texts_of[split]
        for precision in args.precision:
            start = time.perf_counter()
            row = {"split": split, **measure(args.model, texts, precision)}
            row["seconds"] = round(time.perf_counter() - start, 1)
            rows.append(row)
            print(f"{split:<10} {row['precision']:<5} {row['bits_per_byte']:.4f} bits/byte  "
                  f"ppl {row['perplexity']:.2f}  ({row['texts']} abstracts, {row['tokens']:,} tokens, "
                  f"{row['seconds']} s)", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"model": str(args.model), "results": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
