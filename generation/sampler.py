"""Pick the next token of every row: one function for every strategy.

logits → repetition penalty → (greedy: argmax) | temperature → top-k → top-p → min-p → sample.
The order is transformers' order, so a row behaves as `generate` would with the same settings.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .params import SamplingParams
from .warpers import (
    apply_repetition_penalty,
    apply_temperature,
    first_crossing,
    first_crossing_rows,
    min_p_filter,
    top_k_filter,
    top_p_filter,
)


def warp(logits: np.ndarray, params: SamplingParams, seen: np.ndarray | None = None) -> np.ndarray:
    """Apply one row's penalty and filters.

    Args:
        logits: [1, vocab] raw logits of the row.
        params: the row's settings.
        seen: bool [1, vocab] of tokens in the row's context (needed when a penalty is set).

    Returns:
        The warped logits [1, vocab]; for greedy rows only the penalty is applied.
    """
    if params.repetition_penalty != 1:
        if seen is None:
            raise ValueError("repetition_penalty needs the mask of seen tokens")
        logits = apply_repetition_penalty(logits, seen, params.repetition_penalty)
    if params.greedy:
        return logits
    logits = apply_temperature(logits, params.temperature)
    if params.top_k:
        logits = top_k_filter(logits, params.top_k)
    if params.top_p < 1:
        logits = top_p_filter(logits, params.top_p)
    if params.min_p > 0:
        logits = min_p_filter(logits, params.min_p)
    return logits


def sample(logits: np.ndarray, rng: np.random.Generator) -> int:
    """Draw one token from softmax(logits) using `rng` (one uniform number per draw).

    Args:
        logits: [vocab] warped logits; -inf tokens are never drawn.
        rng: the row's generator.

    Returns:
        The token id.
    """
    top = logits.max()
    if top == np.inf:
        # A temperature so small that the best logits overflowed: they share all the mass.
        candidates = np.flatnonzero(logits == np.inf)
        return int(candidates[int(rng.random() * len(candidates))])
    weights = np.exp(logits - top)  # filtered tokens: exp(-inf) = 0
    u = rng.random() * weights.sum(dtype=np.float64)
    j = min(first_crossing(weights, u, side="right"), len(weights) - 1)
    if weights[j] == 0:
        # Rounding pushed u onto the total: take the last token with weight at or before j.
        j = int(np.flatnonzero(weights[: j + 1])[-1])
    return j


def sample_rows(logits: np.ndarray, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """`sample` for every row of `logits` [rows, vocab] at once, drawing the same tokens.

    Args:
        logits: warped logits, one row per generator.
        rngs: one generator per row; each draws one uniform number, as in `sample`.

    Returns:
        int64 [rows] token ids.
    """
    top = logits.max(axis=-1)
    tokens = np.empty(len(logits), dtype=np.int64)
    odd = np.flatnonzero(top == np.inf)  # overflowed logits: rare, left to `sample`
    for i in odd:
        tokens[i] = sample(logits[i], rngs[i])
    rows = np.flatnonzero(top != np.inf) if len(odd) else np.arange(len(logits))
    if not len(rows):
        return tokens
    x = logits[rows] if len(odd) else logits
    weights = np.exp(x - top[rows, None])
    targets = np.array([rngs[i].random() for i in rows]) * weights.sum(axis=-1, dtype=np.float64)
    j = np.minimum(first_crossing_rows(weights, targets, side="right"), weights.shape[1] - 1)
    for k in np.flatnonzero(weights[np.arange(len(rows)), j] == 0):
        j[k] = np.flatnonzero(weights[k, : j[k] + 1])[-1]  # as in `sample`
    tokens[rows] = j
    return tokens


def select_next(
    logits: np.ndarray,
    params: Sequence[SamplingParams],
    rngs: Sequence[np.random.Generator],
    seen: Sequence[np.ndarray | None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The next token of every row and its probability under the model.

    Args:
        logits: [rows, vocab] raw logits of the last position.
        params: one SamplingParams per row (temperature 0 → argmax).
        rngs: one generator per row (unused by greedy rows).
        seen: per row, a bool [vocab] mask of the tokens in its context (prompt + output), or
            None; only read for rows with a repetition penalty.

    Returns:
        (tokens int64 [rows], probabilities float64 [rows]); a probability is the softmax of the
        raw logits (temperature 1, before penalty or filters) at the chosen token.
    """
    # Each warper runs once over all the rows that use it and the draws run together: at 48
    # rows a per-row loop of small numpy calls cost more than the arithmetic. Every warper
    # works row by row and numpy reduces each row of a 2-D array as it reduces a 1-D one, so
    # each row gets exactly the token it gets alone (tests/generation/test_sampling.py).
    tokens = np.empty(logits.shape[0], dtype=np.int64)
    x = logits
    penalized = [i for i, p in enumerate(params) if p.repetition_penalty != 1]
    if penalized:
        x = logits.copy()
        for i in penalized:
            if seen is None or seen[i] is None:
                raise ValueError("repetition_penalty needs the mask of seen tokens")
            x[i] = apply_repetition_penalty(logits[i:i + 1], seen[i][None], params[i].repetition_penalty)[0]
    greedy = [i for i, p in enumerate(params) if p.greedy]
    if greedy:
        tokens[greedy] = x[greedy].argmax(axis=-1)
    drawn = [i for i, p in enumerate(params) if not p.greedy]
    if drawn:
        chosen = [params[i] for i in drawn]
        warped = apply_temperature(x[drawn], [p.temperature for p in chosen])
        for name, off, keep in (("top_k", 0, top_k_filter), ("top_p", 1, top_p_filter),
                                ("min_p", 0, min_p_filter)):
            rows = [j for j, p in enumerate(chosen) if getattr(p, name) != off]
            if len(rows) == len(chosen):
                warped = keep(warped, [getattr(p, name) for p in chosen])
            elif rows:
                warped[rows] = keep(warped[rows], [getattr(chosen[j], name) for j in rows])
        tokens[drawn] = sample_rows(warped, [rngs[i] for i in drawn])
    return tokens, token_probabilities(logits, tokens)


def token_probabilities(logits: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """softmax(logits)[row, token] for each row, computed stably in float64."""
    top = logits.max(axis=-1, keepdims=True)
    log_z = np.log(np.exp(logits - top).sum(axis=-1, dtype=np.float64)) + top[:, 0]
    return np.exp(logits[np.arange(len(tokens)), tokens].astype(np.float64) - log_z)
