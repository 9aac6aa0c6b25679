"""Tokenize the splits once and keep the packed blocks on disk.

The cache key hashes the texts of every split, the tokenizer's full serialization, its EOS
id and the block size, so any change to data, tokenizer or settings is a cache miss and a
rerun with the same inputs skips tokenization.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from finetune.data import Abstract, DataError, pack_blocks

CACHE_VERSION = "blocks-v1"
_BATCH = 1000


def load_tokenizer(name_or_dir: str):
    """A fast tokenizer with an EOS token (a Hub id, a saved dir, or GPT-2 vocab+merges).

    Raises:
        DataError: the tokenizer cannot be loaded (e.g. offline and not cached) or has no EOS.
    """
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(name_or_dir)
    except OSError as err:
        raise DataError(f"tokenizer {name_or_dir}: cannot load ({first_line(err)})") from err
    if tok.eos_token_id is None:
        raise DataError(f"tokenizer {name_or_dir} has no EOS token")
    return tok


def first_line(err: BaseException) -> str:
    """The first line of an error message (transformers' OSErrors run to several)."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def cache_key(splits: Mapping[str, Sequence[Abstract]], tokenizer, block_size: int) -> str:
    """The hex digest naming the cache entry for these inputs."""
    h = hashlib.sha256(CACHE_VERSION.encode())
    h.update(tokenizer.backend_tokenizer.to_str().encode("utf-8"))
    h.update(f"|eos={tokenizer.eos_token_id}|block={block_size}".encode())
    for name in sorted(splits):
        h.update(f"|{name}|{len(splits[name])}|".encode())
        for ab in splits[name]:
            h.update(ab.text.encode("utf-8"))
            h.update(b"\0")
    return h.hexdigest()[:24]


def tokenize_texts(texts: Sequence[str], tokenizer, desc: str = "tokenize") -> list[list[int]]:
    """Token ids of each text, without special tokens, batched through the Rust tokenizer."""
    backend = tokenizer.backend_tokenizer
    out: list[list[int]] = []
    for start in tqdm(range(0, len(texts), _BATCH), desc=desc, unit="batch",
                      disable=len(texts) <= _BATCH):
        encodings = backend.encode_batch(list(texts[start:start + _BATCH]), add_special_tokens=False)
        out.extend(e.ids for e in encodings)
    return out


def tokenize_splits(splits: Mapping[str, Sequence[Abstract]], tokenizer, block_size: int,
                    cache_dir: str | Path, log: Callable[[str], None] = print) -> dict[str, np.ndarray]:
    """Packed `[n_blocks, block_size]` int32 arrays per split, from the cache when possible.

    Args:
        splits: split name → abstracts.
        tokenizer: a fast tokenizer with an EOS token.
        block_size: tokens per block.
        cache_dir: the cache root (entries live in `cache_dir/tokens/<key>/`).
        log: where the counts go.

    Returns:
        split name → blocks.

    Raises:
        DataError: a split has fewer tokens than one block.
    """
    entry = Path(cache_dir) / "tokens" / cache_key(splits, tokenizer, block_size)
    if (entry / "meta.json").is_file():
        meta = json.loads((entry / "meta.json").read_text())
        log(f"tokens: reusing cache {entry}")
        blocks = {name: np.load(entry / f"{name}.npy") for name in splits}
    else:
        blocks, meta = {}, {}
        for name, abstracts in splits.items():
            ids = tokenize_texts([ab.text for ab in abstracts], tokenizer, desc=f"tokenize {name}")
            tokens = sum(len(x) for x in ids) + len(ids)  # + one EOS per abstract
            blocks[name] = pack_blocks(ids, block_size, tokenizer.eos_token_id)
            meta[name] = {"abstracts": len(abstracts), "tokens": tokens,
                          "blocks": int(blocks[name].shape[0])}
        _write_entry(entry, blocks, meta)
    for name, m in meta.items():
        log(f"tokens: {name}: {m['tokens']} tokens (EOS after each of {m['abstracts']} abstracts) "
            f"→ {m['blocks']} blocks of {block_size}, {m['tokens'] - m['blocks'] * block_size} "
            "dropped as the final remainder")
    short = [name for name, b in blocks.items() if len(b) == 0]
    if short:
        raise DataError(f"fewer than {block_size} tokens in {', '.join(short)}: lower "
                        "--block-size or add data")
    return blocks


def _write_entry(entry: Path, blocks: Mapping[str, np.ndarray], meta: dict) -> None:
    """Write into a temporary sibling and rename, so a reader never sees half an entry."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=".tmp-"))
    for name, arr in blocks.items():
        np.save(tmp / f"{name}.npy", arr)
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    try:
        os.replace(tmp, entry)
    except OSError:  # another process finished the same entry first
        shutil.rmtree(tmp, ignore_errors=True)
