"""The blocks bench/train.py trains on: the first abstracts of a corpus, packed in order."""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

import numpy as np

from finetune.data import DataError, clean_abstract, pack_blocks
from finetune.tokenize_cache import load_tokenizer, tokenize_texts

MIN_WORDS = 8  # as `python -m finetune --min-words`


def abstracts(path: Path, text_field: str = "abstract"):
    """Cleaned abstracts of a .jsonl[.gz], in file order (records without the field skipped)."""
    with gzip.open(path, "rt", encoding="utf-8") if path.name.endswith(".gz") else open(
            path, encoding="utf-8") as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            text = record.get(text_field) if isinstance(record, dict) else None
            if isinstance(text, str):
                text = clean_abstract(text)
                if len(text.split()) >= MIN_WORDS:
                    yield text


def corpus_blocks(path: Path, tokenizer: str, block_size: int, n_blocks: int,
                  chunk: int = 2000) -> np.ndarray:
    """The first `n_blocks` blocks of EOS-separated abstracts, read only as far as needed.

    Args:
        path: a .jsonl[.gz] of records with an "abstract".
        tokenizer: a tokenizer directory.
        block_size: tokens per block.
        n_blocks: blocks wanted.
        chunk: abstracts tokenized per batch.

    Returns:
        int32 [n_blocks, block_size].

    Raises:
        DataError: the tokenizer does not load or the corpus is too short.
    """
    tok = load_tokenizer(tokenizer)
    texts = abstracts(path)
    ids: list[list[int]] = []
    tokens = 0
    while tokens < n_blocks * block_size:
        batch = list(itertools.islice(texts, chunk))
        if not batch:
            raise DataError(f"--data {path}: {tokens:,} tokens, fewer than the {n_blocks} "
                             f"blocks of {block_size} this run needs")
        for row in tokenize_texts(batch, tok, desc="bench tokenize"):
            ids.append(row)
            tokens += len(row) + 1
    return pack_blocks(ids, block_size, tok.eos_token_id)[:n_blocks]
