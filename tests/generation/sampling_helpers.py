"""Reference pieces of the sampling tests (not needed by the engine itself): one row's warpers
run alone, a plain softmax, seen-token masks, and raising on invalid SamplingParams."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from generation.sampling.params import SamplingParams
from generation.sampling.pipeline import WARPERS


def warp(logits: np.ndarray, params: SamplingParams, seen: np.ndarray | None = None) -> np.ndarray:
    """Apply one row's warpers, in the table's order, as if it ran alone.

    Args:
        logits: [1, vocab] raw logits of the row.
        params: the row's settings.
        seen: bool [1, vocab] of tokens in the row's context (needed when a penalty is set).

    Returns:
        The warped logits [1, vocab]; for greedy rows only the penalties are applied.
    """
    for w in WARPERS:
        value = getattr(params, w.field)
        if w.every_row and value != w.off:
            if seen is None:
                raise ValueError(f"{w.field} needs the mask of seen tokens")
            logits = w.fn(logits, seen, value)
    if params.greedy:
        return logits
    for w in WARPERS:
        value = getattr(params, w.field)
        if not w.every_row and value != w.off:
            logits = w.fn(logits, value)
    return logits


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax; -inf logits get probability 0."""
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    z /= z.sum(axis=-1, keepdims=True)
    return z


def seen_mask(token_ids: Sequence[Sequence[int]], vocab_size: int) -> np.ndarray:
    """The bool [rows, vocab] mask of tokens present in each row's ids."""
    mask = np.zeros((len(token_ids), vocab_size), dtype=bool)
    for i, ids in enumerate(token_ids):
        mask[i, np.asarray(ids, dtype=np.int64)] = True
    return mask


def validate(params: SamplingParams) -> None:
    """Raise ValueError listing every problem of `params`, one per line."""
    issues = params.problems()
    if issues:
        raise ValueError("\n".join(issues))
