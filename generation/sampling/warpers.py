"""Logits warpers: pure numpy functions, logits in → logits out.

Every function takes logits of shape [rows, vocab] and a parameter that is either one value
for all rows or one value per row, and returns a new array (the input is never modified).
Removed tokens are set to -inf, so a later softmax gives them probability exactly 0 and a
later filter never brings them back. Every filter keeps at least one token per row (the
most likely one). The semantics follow transformers' warpers of the same name, with one
documented difference: where several tokens tie exactly at a cut-off, all of them are kept
(transformers' choice among ties depends on its sort order).

None of them sorts the full vocabulary on the common path: top-k uses a partition, top-p
sorts a small candidate set and widens it only when the candidates do not reach top_p (a
flat distribution does need the full sort), min-p is a threshold on the logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Candidate-set sizes tried by top-p before it sorts the whole vocabulary.
_TOP_P_CANDIDATES = (64, 1024)
# Block length of the two-level running sum in `first_crossing`.
_BLOCK = 256
# Index 0 (dropped) → -inf, index 1 (kept) → 0.
_ADD_IF_KEPT = np.array([-np.inf, 0.0], dtype=np.float32)


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
    return _keep_at_least(logits, kth_largest(logits, _per_row(top_k, logits, int)))


def top_k_candidates(logits: np.ndarray, top_k: int | Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """`top_k_filter`'s survivors alone: what a row keeps, without the -inf of the rest.

    Args:
        logits: [rows, vocab].
        top_k: one value or one per row; 0 (or >= vocab) keeps the whole row.

    Returns:
        (values [rows, m], ids int64 [rows, m]): each row's kept logits in token-id order,
        packed to the left; m is the most any row keeps, and a row that keeps fewer is padded
        on the right with -inf values and id -1. The other warpers work on `values` as on full
        rows (a padded -inf is a filtered token), so top-p and the draw after a top-k touch k
        values, not the vocabulary.
    """
    kth = kth_largest(logits, _per_row(top_k, logits, int))
    kept = [np.flatnonzero(row >= t) for row, t in zip(logits, kth, strict=True)]
    width = max(len(k) for k in kept)
    values = np.full((len(kept), width), -np.inf, dtype=logits.dtype)
    ids = np.full((len(kept), width), -1, dtype=np.int64)
    for i, k in enumerate(kept):
        ids[i, :len(k)] = k
        values[i, :len(k)] = logits[i, k]
    return values, ids


def kth_largest(logits: np.ndarray, ks: np.ndarray) -> np.ndarray:
    """Each row's k-th largest logit (-inf where k is 0 or >= vocab: the row keeps everything).

    A partition over the whole vocabulary costs ~0.1 ms a row; instead the k-th largest of the
    rows' block maxima (blocks of `_BLOCK`) bounds it from below (k blocks hold a value at least
    that large), and only the few logits above the bound are partitioned. Exact, ties included.
    """
    rows, vocab = logits.shape
    out = np.full(rows, -np.inf, dtype=logits.dtype)
    on = np.flatnonzero((ks > 0) & (ks < vocab))
    if not len(on):
        return out
    blocks = vocab // _BLOCK
    maxima = logits[on, :blocks * _BLOCK].reshape(len(on), blocks, _BLOCK).max(axis=-1) if blocks else None
    for r, i in enumerate(on):
        k, row = int(ks[i]), logits[i]
        if k <= blocks:
            row = row[row >= np.partition(maxima[r], blocks - k)[blocks - k]]
        out[i] = np.partition(row, len(row) - k)[len(row) - k]
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
    return _keep_at_least(logits, [_top_p_cutoff(row, p) if p < 1 else -np.inf
                                   for row, p in zip(logits, ps, strict=True)])


def _top_p_cutoff(row: np.ndarray, top_p: float) -> float:
    """The logit of the last kept token: tokens with at least this logit stay."""
    alive = row > -np.inf
    if not alive.all():
        # Filtered already (top-k ran first): work on the survivors only. A partition over
        # thousands of tied -inf values is slow, they hold no probability mass, and a row of
        # `top_k_candidates` then gives the cut-off of its full row, whatever its padding.
        row = row[alive]
    vocab = row.shape[-1]
    top_logit = row.max()
    target = top_p * np.exp(row - top_logit).sum(dtype=np.float64)
    for n in (c for c in _TOP_P_CANDIDATES if c < vocab):
        # The n largest logits, largest first: only these are sorted.
        top = np.sort(np.partition(row, vocab - n)[vocab - n:])[::-1]
        weights = np.exp(top - top_logit)
        # The first rank whose running mass reaches top_p is the last one kept: every rank up
        # to it has less than top_p above it.
        r = first_crossing(weights, target, side="left")
        if r < n:
            return float(top[r])
        if weights.sum(dtype=np.float64) < 0.5 * target:
            break  # a flat distribution: widening would not reach top_p soon
    top = np.sort(row)[::-1]
    r = first_crossing(np.exp(top - top_logit), target, side="left")
    return float(top[min(r, vocab - 1)])  # r == vocab only by rounding: keep everything


def min_p_filter(logits: np.ndarray, min_p: float | Sequence[float]) -> np.ndarray:
    """Keep tokens whose probability is at least min_p times the most likely token's.

    p_i >= min_p * p_max is the same as logit_i >= logit_max + log(min_p): no softmax needed.

    Args:
        logits: [rows, vocab].
        min_p: one value or one per row, in [0, 1]; 0 leaves the row unchanged.

    Returns:
        The filtered logits.
    """
    ms = _per_row(min_p, logits, float)
    return _keep_at_least(logits, [row.max() + np.log(m) if m > 0 else -np.inf
                                   for row, m in zip(logits, ms, strict=True)])


def apply_repetition_penalty(
    logits: np.ndarray, seen: np.ndarray, penalty: float | Sequence[float]
) -> np.ndarray:
    """CTRL's repetition penalty on tokens already seen (prompt and output), once per token.

    A positive logit is divided by the penalty and a negative one multiplied by it, so a
    penalty > 1 always makes a seen token less likely.

    Args:
        logits: [rows, vocab].
        seen: bool [rows, vocab] (or one bool [vocab] mask per row), True where the token
            occurred in that row's context.
        penalty: one value or one per row, > 0; 1 leaves the row unchanged.

    Returns:
        The penalized logits.
    """
    ps = _per_row(penalty, logits, float)
    out = logits.copy()
    for i, p in enumerate(ps):
        if p != 1:
            ids = np.flatnonzero(seen[i])
            x = out[i, ids]
            out[i, ids] = np.where(x < 0, x * np.float32(p), x / np.float32(p))
    return out


def first_crossing(weights: np.ndarray, target: float, side: str = "left") -> int:
    """The first index where the running sum of `weights` reaches `target`.

    Same as `np.searchsorted(np.cumsum(weights), target, side)` (>= for "left", > for
    "right"), but a long array is summed by blocks first and only one block is scanned: a
    sequential cumsum over 50k floats costs more than the rest of a sampling step.

    Args:
        weights: 1-D non-negative weights.
        target: the mass to reach.
        side: "left" (reach) or "right" (exceed).

    Returns:
        The index, or len(weights) when the total stays below the target.
    """
    n = len(weights)
    if n <= 4 * _BLOCK:
        return int(np.searchsorted(np.cumsum(weights, dtype=np.float64), target, side))
    full = n - n % _BLOCK
    sums = weights[:full].reshape(-1, _BLOCK).sum(axis=1, dtype=np.float64)
    if full < n:
        sums = np.append(sums, weights[full:].sum(dtype=np.float64))
    cum = np.cumsum(sums)
    b = int(np.searchsorted(cum, target, side))
    if b >= len(cum):
        return n
    before = cum[b - 1] if b else 0.0
    block = weights[b * _BLOCK:(b + 1) * _BLOCK]
    j = int(np.searchsorted(np.cumsum(block, dtype=np.float64), target - before, side))
    return b * _BLOCK + min(j, len(block) - 1)  # j == len only by rounding at the block's end


def first_crossing_rows(weights: np.ndarray, targets: np.ndarray, side: str = "left") -> np.ndarray:
    """`first_crossing` of every row of `weights` [rows, n] with its own target, at once.

    The same block sums and running sums as `first_crossing`, taken along the last axis (numpy
    reduces each row of a contiguous 2-D array as it reduces a 1-D one), so each row gets the
    same index; a running sum is non-decreasing, so "first index reaching the target" is the
    count of entries below it.
    """
    rows, n = weights.shape
    t = np.asarray(targets, dtype=np.float64)[:, None]
    below = np.less if side == "left" else np.less_equal
    if n <= 4 * _BLOCK:
        return below(np.cumsum(weights, axis=-1, dtype=np.float64), t).sum(axis=-1)
    full = n - n % _BLOCK
    sums = weights[:, :full].reshape(rows, -1, _BLOCK).sum(axis=-1, dtype=np.float64)
    if full < n:
        sums = np.concatenate([sums, weights[:, full:].sum(axis=-1, dtype=np.float64)[:, None]], axis=1)
    cum = np.cumsum(sums, axis=-1)
    b = below(cum, t).sum(axis=-1)
    out = np.full(rows, n, dtype=np.int64)
    inside = np.flatnonzero(b < cum.shape[1])
    if len(inside):
        bi = b[inside]
        before = np.where(bi > 0, cum[inside, np.maximum(bi - 1, 0)], 0.0)
        # Each row's block, padded with zeros past the end (zeros leave a running sum as it is).
        idx = bi[:, None] * _BLOCK + np.arange(_BLOCK)
        block = np.where(idx < n, weights[inside[:, None], np.minimum(idx, n - 1)], 0)
        j = below(np.cumsum(block, axis=-1, dtype=np.float64), (t[inside, 0] - before)[:, None]).sum(axis=-1)
        length = np.minimum(_BLOCK, n - bi * _BLOCK)
        out[inside] = bi * _BLOCK + np.minimum(j, length - 1)
    return out


def _keep_at_least(logits: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """-inf wherever a logit is below its row's threshold (the row maximum always stays)."""
    thr = np.asarray(thresholds, dtype=np.float64)
    thr = np.minimum(thr, logits.max(axis=-1)).astype(logits.dtype)
    keep = logits >= thr[:, None]
    # Adding 0 or -inf picked by a lookup: np.where branches per element and costs ~5x more
    # on the random keep patterns of a flat distribution.
    return logits + np.take(_ADD_IF_KEPT, keep.view(np.uint8))


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
