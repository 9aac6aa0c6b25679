"""Logits warpers: pure numpy functions, logits in → logits out.

Every function takes logits of shape [rows, vocab] and a parameter that is either one value
for all rows or one value per row, and returns a new array (the input is never modified).
Removed tokens are set to -inf, so a later softmax gives them probability exactly 0 and a
later filter never brings them back. Every filter keeps at least one token per row (the
most likely one). The semantics follow transformers' warpers of the same name, with one
documented difference: where several tokens tie exactly at a cut-off, all of them are kept
(transformers' choice among ties depends on its sort order).

None of them sorts the full vocabulary on the common path: top-k uses a partition, top-p
sorts a small candidate set and widens it only when the candidates do not reach top_p.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Candidate-set sizes tried by top-p before it sorts the whole vocabulary.
_TOP_P_CANDIDATES = (64, 1024)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax; -inf logits get probability 0.

    Args:
        logits: [rows, vocab] with at least one finite value per row.

    Returns:
        Probabilities of the same shape and dtype.
    """
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    z /= z.sum(axis=-1, keepdims=True)
    return z


def apply_temperature(logits: np.ndarray, temperature: float | Sequence[float]) -> np.ndarray:
    """Divide each row by its temperature (rows with temperature 0, i.e. greedy, are unchanged).

    Args:
        logits: [rows, vocab].
        temperature: one value or one per row, >= 0.

    Returns:
        The scaled logits.
    """
    t = _per_row(temperature, logits, float)
    t = np.where(t > 0, t, 1.0).astype(logits.dtype)
    return logits / t[:, None]


def top_k_filter(logits: np.ndarray, top_k: int | Sequence[int]) -> np.ndarray:
    """Keep the k highest logits per row (and every token tied with the k-th).

    Args:
        logits: [rows, vocab].
        top_k: one value or one per row; 0 (or >= vocab) leaves the row unchanged.

    Returns:
        The filtered logits.
    """
    ks = _per_row(top_k, logits, int)
    out = logits.copy()
    vocab = logits.shape[-1]
    for i, k in enumerate(ks):
        if 0 < k < vocab:
            kth = np.partition(logits[i], vocab - k)[vocab - k]
            out[i, logits[i] < kth] = -np.inf
    return out


def top_p_filter(logits: np.ndarray, top_p: float | Sequence[float]) -> np.ndarray:
    """Nucleus filter: keep the smallest set of most likely tokens whose probability reaches top_p.

    A token is kept when the probability of all tokens ranked above it is below top_p, so the
    token that crosses top_p is kept (as in transformers' TopPLogitsWarper).

    Args:
        logits: [rows, vocab].
        top_p: one value or one per row, in (0, 1]; 1 leaves the row unchanged.

    Returns:
        The filtered logits.
    """
    ps = _per_row(top_p, logits, float)
    out = logits.copy()
    for i, p in enumerate(ps):
        if p < 1:
            out[i, logits[i] < _top_p_cutoff(logits[i], p)] = -np.inf
    return out


def _top_p_cutoff(row: np.ndarray, top_p: float) -> float:
    """The logit of the last kept token: tokens with at least this logit stay."""
    vocab = row.shape[-1]
    top_logit = row.max()
    total = np.exp(row - top_logit).sum()
    for n in (*(c for c in _TOP_P_CANDIDATES if c < vocab), vocab):
        # The n largest logits, largest first; only these are sorted.
        top = np.sort(np.partition(row, vocab - n)[vocab - n:] if n < vocab else row)[::-1]
        cum = np.cumsum(np.exp(top - top_logit) / total)
        # First rank whose cumulative mass reaches top_p: every rank up to it has less than
        # top_p above it and is kept.
        r = int(np.searchsorted(cum, top_p, side="left"))
        if r < n:
            return float(top[r])
    # Rounding left the total mass just under top_p: keep everything.
    return float(top[-1])


def min_p_filter(logits: np.ndarray, min_p: float | Sequence[float]) -> np.ndarray:
    """Keep tokens whose probability is at least min_p times the most likely token's.

    Args:
        logits: [rows, vocab].
        min_p: one value or one per row, in [0, 1]; 0 leaves the row unchanged.

    Returns:
        The filtered logits.
    """
    ms = _per_row(min_p, logits, float)
    out = logits.copy()
    for i, m in enumerate(ms):
        if m > 0:
            probs = softmax(logits[i])
            out[i, probs < m * probs.max()] = -np.inf
    return out


def apply_repetition_penalty(
    logits: np.ndarray, seen: np.ndarray, penalty: float | Sequence[float]
) -> np.ndarray:
    """CTRL's repetition penalty on tokens already seen (prompt and output), once per token.

    A positive logit is divided by the penalty and a negative one multiplied by it, so a
    penalty > 1 always makes a seen token less likely.

    Args:
        logits: [rows, vocab].
        seen: bool [rows, vocab], True where the token occurred in that row's context.
        penalty: one value or one per row, > 0; 1 leaves the row unchanged.

    Returns:
        The penalized logits.
    """
    ps = _per_row(penalty, logits, float)
    out = logits.copy()
    for i, p in enumerate(ps):
        if p != 1:
            x = logits[i]
            penalized = np.where(x < 0, x * np.float32(p), x / np.float32(p)).astype(x.dtype)
            out[i] = np.where(seen[i], penalized, x)
    return out


def seen_mask(token_ids: Sequence[Sequence[int]], vocab_size: int) -> np.ndarray:
    """The bool [rows, vocab] mask of tokens present in each row's ids."""
    mask = np.zeros((len(token_ids), vocab_size), dtype=bool)
    for i, ids in enumerate(token_ids):
        mask[i, np.asarray(ids, dtype=np.int64)] = True
    return mask


def _per_row(value, logits: np.ndarray, kind: type) -> np.ndarray:
    rows = logits.shape[0]
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape [rows, vocab], got {logits.shape}")
    values = np.asarray(value, dtype=np.float64 if kind is float else np.int64)
    if values.ndim == 0:
        return np.full(rows, values)
    if values.shape != (rows,):
        raise ValueError(f"expected one value or {rows} values (one per row), got {values.shape}")
    return values
