"""Fixture data in the real formats, written for these tests (no copied data).

Release records follow Multi-XScience's `{train,val,test}.json.gz`: a JSON list of
`{"aid", "mid", "abstract", "related_work", "ref_abstract": {"@cite_N": {"mid", "abstract"}}}`.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

SUBJECTS = ["graph neural networks", "distributed consensus", "program synthesis",
            "image segmentation", "query optimization", "reinforcement learning",
            "compiler verification", "speech recognition", "sparse recovery", "cache coherence"]
CLAIMS = ["We propose a new method for {s} that scales to large inputs.",
          "In this paper we study the complexity of {s} under mild assumptions.",
          "Our experiments on three benchmarks show that the approach to {s} outperforms "
          "strong baselines.",
          "We prove lower bounds for {s} and give a matching algorithm.",
          "The proposed framework for {s} converges in polynomial time."]
ENDINGS = ["Results on real data demonstrate the effectiveness of our approach.",
           "Code and data are released to support further work.",
           "We conclude with open problems and directions for future work."]


def make_abstract(i: int) -> str:
    """A distinct, abstract-like text for index i (about 35-45 words)."""
    s, t = SUBJECTS[i % len(SUBJECTS)], SUBJECTS[(i // len(SUBJECTS) + 3) % len(SUBJECTS)]
    return (f"{CLAIMS[i % len(CLAIMS)].format(s=s)} {CLAIMS[(i + 2) % len(CLAIMS)].format(s=t)} "
            f"{ENDINGS[i % len(ENDINGS)]} This is study number {i}.")


def release_records(start: int, n: int, refs_per_record: int = 2) -> list[dict]:
    """n release records with paper ids start.. and cited abstracts with their own ids."""
    records = []
    for i in range(start, start + n):
        refs = {f"@cite_{j}": {"mid": f"ref{i}-{j}", "abstract": make_abstract(10_000 + i * 10 + j)}
                for j in range(refs_per_record)}
        records.append({"aid": f"math/{i:07d}", "mid": f"p{i}", "abstract": make_abstract(i),
                        "related_work": "Prior work @cite_0 studied this.", "ref_abstract": refs})
    return records


def write_json_gz(path: Path, value) -> Path:
    """Write value as gzipped JSON (the release files' encoding)."""
    with gzip.open(path, "wt", encoding="utf-8") as f:
        json.dump(value, f)
    return path


def write_release(directory: Path, sizes=(40, 8, 8), refs_per_record: int = 2) -> Path:
    """A release directory: train/val/test.json.gz with disjoint paper ids."""
    directory.mkdir(parents=True, exist_ok=True)
    start = 0
    for name, n in zip(("train", "val", "test"), sizes, strict=True):
        write_json_gz(directory / f"{name}.json.gz", release_records(start, n, refs_per_record))
        start += n
    return directory


@pytest.fixture
def release_dir(tmp_path) -> Path:
    return write_release(tmp_path / "release")


TINY_SCRATCH = {"hidden_size": 32, "num_layers": 2, "num_heads": 4,
                "attention_types": [[["global", "local"], 1]], "window_size": 8,
                "max_position_embeddings": 64, "intermediate_size": 64}


@pytest.fixture
def scratch_json(tmp_path) -> Path:
    """A --from-scratch JSON: 2 layers (global + local), window 8 < the 32-token blocks."""
    path = tmp_path / "tiny_neo.json"
    path.write_text(json.dumps(TINY_SCRATCH))
    return path


def train_argv(data, out: Path, tokenizer: Path, scratch: Path, cache: Path, *extra) -> list[str]:
    """The CLI arguments of a fast tiny run (block 32, batch 4, no accumulation; no
    torch.compile, the CPU default, whose compile time would dwarf a tiny run: tests/bench's
    bench/train.py smoke test trains with it)."""
    return ["--no-torch-compile", "--data", str(data), "--output-dir", str(out), "--tokenizer", str(tokenizer),
            "--from-scratch", str(scratch), "--cache-dir", str(cache), "--block-size", "32",
            "--batch-size", "4", "--gradient-accumulation-steps", "1", "--learning-rate", "3e-3",
            "--logging-steps", "5", "--min-words", "3", *extra]


@pytest.fixture
def no_run(monkeypatch):
    """`finetune.cli.run` replaced by a failure: for tests whose CLI call must stop before it."""
    def never_run(*_args, **_kwargs):
        raise AssertionError("run() started although the CLI should have refused")

    monkeypatch.setattr("finetune.cli.run", never_run)
