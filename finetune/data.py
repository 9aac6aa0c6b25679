"""Pure data functions: records → abstracts → cleaned, deduplicated, split, packed.

Nothing here reads files or prints; `finetune.sources` does that and reports the counts
these functions return.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

SPLITS = ("train", "validation", "test")


class DataError(ValueError):
    """A user error in the data: a missing path, a file that is not JSON, nothing left."""


@dataclass(frozen=True)
class Abstract:
    """One abstract and, where the source has one, its Microsoft Academic Graph id."""

    text: str
    mid: str | None = None

    @cached_property
    def key(self) -> str:
        """The normalized text (the dedupe and split key), computed once."""
        return normalize(self.text)

    @cached_property
    def fraction(self) -> float:
        """`hash_fraction` of the text, computed once."""
        return _fraction_of_key(self.key)


def _mid(value) -> str | None:
    return None if value is None or value == "" else str(value)


def extract_abstracts(records: Iterable) -> tuple[list[Abstract], int]:
    """Every paper abstract and every cited abstract of Multi-XScience release records.

    A record is `{"aid", "mid", "abstract", "related_work", "ref_abstract": {"@cite_N":
    {"mid", "abstract"}, ...}}`. A record that is not such an object (not a dict, a
    non-string abstract, a ref_abstract that is not a dict of such objects) is skipped whole.

    Args:
        records: decoded JSON records.

    Returns:
        (abstracts in record order, number of malformed records skipped).
    """
    out: list[Abstract] = []
    malformed = 0
    for rec in records:
        refs = rec.get("ref_abstract", {}) if isinstance(rec, dict) else None
        ok = (isinstance(rec, dict) and isinstance(rec.get("abstract"), str)
              and isinstance(refs, dict)
              and all(isinstance(r, dict) and isinstance(r.get("abstract"), str)
                      for r in refs.values()))
        if not ok:
            malformed += 1
            continue
        out.append(Abstract(rec["abstract"], _mid(rec.get("mid"))))
        out.extend(Abstract(r["abstract"], _mid(r.get("mid"))) for r in refs.values())
    return out, malformed


def extract_texts(records: Iterable, text_field: str) -> tuple[list[Abstract], int]:
    """The `text_field` string of each JSON-lines record.

    Args:
        records: decoded JSON objects.
        text_field: the key holding the abstract.

    Returns:
        (abstracts, number of records skipped because they are not objects with that string).
    """
    out, malformed = [], 0
    for rec in records:
        if isinstance(rec, dict) and isinstance(rec.get(text_field), str):
            out.append(Abstract(rec[text_field]))
        else:
            malformed += 1
    return out, malformed


# "Author(s): A. Name, B. Name | Abstract: ..." and bare "Abstract:" / "ABSTRACT" labels.
_AUTHORS = re.compile(r"^(?:authors?|author\(s\))\s*:[^|]*\|\s*", re.IGNORECASE)
_LABEL_CAPS = re.compile(r"^(?:ABSTRACT|SUMMARY)\b\s*")
_LABEL_PUNCT = re.compile(r"^(?:abstract|summary)\s*[:.\u2013\u2014-]+\s*", re.IGNORECASE)


def clean_abstract(text: str) -> str:
    """Strip leading author/"Abstract:" labels and collapse whitespace.

    "Abstract interpretation is ..." keeps its first word: a label is only dropped when it
    is followed by punctuation or written in capitals.

    Args:
        text: a raw abstract.

    Returns:
        The cleaned abstract ("" if nothing is left).
    """
    text = " ".join(text.split())
    while True:
        stripped = _AUTHORS.sub("", text, count=1)
        stripped = _LABEL_PUNCT.sub("", stripped, count=1)
        stripped = _LABEL_CAPS.sub("", stripped, count=1)
        if stripped == text:
            return text
        text = stripped


def normalize(text: str) -> str:
    """The dedupe key of a text: lowercase words, punctuation and spacing ignored."""
    return " ".join(re.sub(r"[\W_]+", " ", text.lower()).split())


def clean_all(abstracts: Iterable[Abstract], min_words: int,
              max_words: int | None = None) -> tuple[list[Abstract], dict]:
    """Clean each abstract and drop the empty, the short and the overlong ones.

    Args:
        abstracts: raw abstracts.
        min_words: abstracts with fewer words are dropped.
        max_words: abstracts with more words are dropped (None: no upper limit).

    Returns:
        (kept abstracts, {"empty": n, "short": n, "long": n}).
    """
    kept, counts = [], {"empty": 0, "short": 0, "long": 0}
    for ab in abstracts:
        text = clean_abstract(ab.text)
        words = len(text.split())
        if not text:
            counts["empty"] += 1
        elif words < min_words:
            counts["short"] += 1
        elif max_words is not None and words > max_words:
            counts["long"] += 1
        else:
            kept.append(Abstract(text, ab.mid))
    return kept, counts


def dedupe(abstracts: Iterable[Abstract]) -> tuple[list[Abstract], dict]:
    """Keep the first of each MAG id and of each normalized text.

    Args:
        abstracts: cleaned abstracts.

    Returns:
        (unique abstracts in input order, {"duplicate_mid": n, "duplicate_text": n}).
    """
    mids, texts = set(), set()
    kept, counts = [], {"duplicate_mid": 0, "duplicate_text": 0}
    for ab in abstracts:
        key = ab.key
        if ab.mid is not None and ab.mid in mids:
            counts["duplicate_mid"] += 1
        elif key in texts:
            counts["duplicate_text"] += 1
        else:
            if ab.mid is not None:
                mids.add(ab.mid)
            texts.add(key)
            kept.append(ab)
    return kept, counts


def hash_fraction(text: str) -> float:
    """A deterministic number in [0, 1) from the normalized text."""
    return _fraction_of_key(normalize(text))


def _fraction_of_key(key: str) -> float:
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_by_hash(abstracts: Iterable[Abstract], val_fraction: float,
                  test_fraction: float) -> dict[str, list[Abstract]]:
    """Split deterministically by a hash of the normalized text (same text → same split).

    Args:
        abstracts: deduplicated abstracts.
        val_fraction: expected share for validation.
        test_fraction: expected share for test.

    Returns:
        {"train": [...], "validation": [...], "test": [...]}, input order kept in each.
    """
    splits: dict[str, list[Abstract]] = {name: [] for name in SPLITS}
    for ab in abstracts:
        h = ab.fraction
        name = "test" if h < test_fraction else (
            "validation" if h < test_fraction + val_fraction else "train")
        splits[name].append(ab)
    return splits


def remove_overlap(splits: Mapping[str, Sequence[Abstract]]) -> tuple[dict, dict]:
    """Drop from validation what is in test, and from train what is in validation or test.

    Overlap is the same MAG id or the same normalized text. Test is never changed.

    Args:
        splits: {"train", "validation", "test"} → abstracts.

    Returns:
        (new splits, {"validation": dropped, "train": dropped}).
    """
    out = {"test": list(splits["test"])}
    dropped = {}
    held_mids: set[str] = set()
    held_texts: set[str] = set()
    for name, held_out in (("validation", "test"), ("train", "validation")):
        held_mids.update(ab.mid for ab in out[held_out] if ab.mid is not None)
        held_texts.update(ab.key for ab in out[held_out])
        out[name] = [ab for ab in splits[name]
                     if ab.mid not in held_mids and ab.key not in held_texts]
        dropped[name] = len(splits[name]) - len(out[name])
    return {name: out[name] for name in SPLITS}, dropped


def take(abstracts: Sequence[Abstract], limit: int | None) -> list[Abstract]:
    """At most `limit` abstracts, chosen by text hash (a stable, unbiased sample), in order."""
    if limit is None or limit >= len(abstracts):
        return list(abstracts)
    chosen = set(sorted(range(len(abstracts)), key=lambda i: abstracts[i].fraction)[:limit])
    return [ab for i, ab in enumerate(abstracts) if i in chosen]


def pack_blocks(token_lists: Iterable[Sequence[int]], block_size: int, eos_id: int) -> np.ndarray:
    """Concatenate documents, each followed by EOS, and cut into full blocks.

    Only the final remainder (fewer than `block_size` tokens) is dropped.

    Args:
        token_lists: token ids of each document (without EOS).
        block_size: tokens per block.
        eos_id: the end-of-text id appended after each document.

    Returns:
        int32 array of shape [n_blocks, block_size].
    """
    pieces = []
    for ids in token_lists:
        pieces.append(np.asarray(ids, dtype=np.int32))
        pieces.append(np.array([eos_id], dtype=np.int32))
    stream = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)
    n_blocks = len(stream) // block_size
    return stream[: n_blocks * block_size].reshape(n_blocks, block_size)
