"""Held-out text for the gate: the built-in sample or a user file, cut into token chunks."""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from pathlib import Path

# Written for this project (not taken from any corpus): abstract-like paragraphs the gate
# uses for prompts and perplexity when no --eval-text file is given.
BUILTIN_TEXT = [
    "We study the problem of learning compact representations of large graphs. Existing "
    "methods either ignore the structure of the neighbourhood or scale quadratically with the "
    "number of nodes. We propose a sampling scheme that preserves local structure and runs in "
    "linear time, and we show on five public benchmarks that it matches the accuracy of full "
    "spectral embeddings while using a fraction of the memory.",
    "Scheduling jobs with deadlines on parallel machines is a classical problem in operations "
    "research. In this paper we give a polynomial-time approximation scheme for the case of "
    "identical machines and prove that no such scheme exists for unrelated machines unless P "
    "equals NP. Our analysis relies on a new rounding technique for configuration linear "
    "programs, which may be of independent interest.",
    "Neural language models trained on scientific text can summarise related work, but they "
    "often hallucinate citations. We introduce a retrieval step that grounds every generated "
    "sentence in the abstracts of the cited papers. Human evaluation shows that the grounded "
    "summaries are preferred in seventy percent of the cases and contain fewer factual errors.",
    "Consensus protocols are the backbone of replicated databases. We prove a lower bound on "
    "the number of messages any crash-tolerant protocol must exchange and present an "
    "algorithm that meets the bound up to a constant factor. Experiments on a cluster of "
    "sixty machines confirm that the algorithm reduces latency under contention.",
    "Let x be a vector in a high-dimensional space and epsilon a small constant. We show that "
    "a random projection to logarithmically many dimensions preserves all pairwise distances "
    "up to a factor of one plus epsilon with high probability, and that this bound is tight "
    "for linear maps. We then apply the result to nearest-neighbour search and clustering.",
    "Verifying distributed systems remains difficult because the state space grows "
    "exponentially with the number of processes. This work introduces a framework that "
    "combines symbolic model checking with inductive invariants inferred from traces. We "
    "verify three industrial protocols and find two previously unknown bugs.",
]


def load_texts(path: str | Path | None) -> list[str]:
    """Documents from `.txt` (blank-line separated), `.jsonl` or `.jsonl.gz` ("abstract" or
    "text" field); the built-in sample when `path` is None.

    Raises:
        ValueError: the file holds no usable text or a malformed JSON line.
    """
    if path is None:
        return list(BUILTIN_TEXT)
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        if ".jsonl" not in path.name:
            docs = [d.strip() for d in handle.read().split("\n\n")]
        else:
            docs = []
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{number}: not JSON ({err})") from err
                docs.append(str(record.get("abstract") or record.get("text") or "").strip())
                if len(docs) >= 2000:  # plenty for a few thousand tokens
                    break
    docs = [d for d in docs if d]
    if not docs:
        raise ValueError(f"{path}: no text found (expected paragraphs or an 'abstract'/'text' field)")
    return docs


def token_stream(tokenizer, texts: Sequence[str], limit: int, separator: int | None) -> list[int]:
    """Concatenate tokenized texts (separated by `separator`, e.g. EOS) up to `limit` tokens,
    cycling through the texts again when they are shorter than `limit`."""
    out: list[int] = []
    while len(out) < limit:
        for text in texts:
            out.extend(tokenizer(text)["input_ids"])
            if separator is not None:
                out.append(separator)
            if len(out) >= limit:
                break
    return out[:limit]


def chunks(stream: Sequence[int], length: int) -> list[list[int]]:
    """Cut a token stream into consecutive chunks of `length` (the last one may be shorter,
    but never under 2 tokens, which a perplexity needs)."""
    out = [list(stream[i:i + length]) for i in range(0, len(stream), length)]
    return [c for c in out if len(c) >= 2]
