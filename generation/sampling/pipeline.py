"""Pick the next token of every row: one table of warpers, one function for every strategy.

`WARPERS` is the one place a decoding knob is written down: its SamplingParams field, the value
that turns it off, its pure numpy function, its type, bounds and help. `select_next` walks it,
`SamplingParams` takes its fields and validation from it, and `python -m generation` its options.
The walk: the rows' penalties first (every row, greedy too), then argmax for greedy rows
(temperature 0), then the other warpers in table order on the sampled rows, then one draw each.
The order is transformers' (penalty, temperature, top-k, top-p, min-p), so a row behaves as
`generate` would with the same settings. A new warper is a function in warpers.py and a row here.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .warpers import (
    apply_repetition_penalty,
    apply_temperature,
    first_crossing,
    first_crossing_rows,
    min_p_filter,
    top_k_candidates,
    top_k_filter,
    top_p_filter,
)

# Any k >= the vocabulary keeps every token; beyond int32 numpy cannot even hold k.
MAX_TOP_K = 2**31 - 1
# Rows with a top-k up to this many tokens are warped and drawn on their candidates alone.
NARROW_TOP_K = 1024


@dataclass(frozen=True)
class Warper:
    """One decoding knob.

    Attributes:
        field: the SamplingParams field (`--field-name` on the command line).
        off: the value that leaves the logits alone; the field's default.
        fn: (logits [rows, vocab], one value per row) -> logits; with `every_row`,
            (logits, one seen-token mask per row, values) -> logits.
        kind: int or float.
        low, high: the allowed range; `low_open` leaves `low` itself out.
        help: what it does, for the command line and SamplingParams' docstring.
        off_means: what the off value means, in error messages ("off", "greedy").
        every_row: runs on greedy rows too, before temperature, and reads the tokens each row
            has seen (the repetition penalty); otherwise it runs on sampled rows only.
        narrow: (logits, values) -> (values [rows, m], ids [rows, m]): the same filter
            returning only what each row keeps (`top_k_candidates`), for rows that keep at most
            `NARROW_TOP_K` tokens: the warpers after it and the draw then work on m values.
    """

    field: str
    off: float
    fn: Callable
    kind: type
    low: float
    high: float
    help: str
    low_open: bool = False
    off_means: str = "off"
    every_row: bool = False
    narrow: Callable | None = None

    def problem(self, value: object) -> str | None:
        """What is wrong with `value` for this field, or None when it is allowed."""
        return range_problem(self, value)


def range_problem(knob, value: object) -> str | None:
    """What is wrong with `value` for a numeric knob (a Warper or a search.SearchKnob: field,
    kind, low, high, low_open, off, off_means), or None when it is allowed."""
    kind_ok = _is_int(value) if knob.kind is int else _is_real(value)
    if kind_ok and (knob.low < value if knob.low_open else knob.low <= value) and value <= knob.high:
        return None
    what = "an integer" if knob.kind is int else "a number"
    return (f"{knob.field} must be {what} in {'(' if knob.low_open else '['}{knob.low}, "
            f"{knob.high}] ({knob.off:g} = {knob.off_means}), got {value!r}")


# Temperature 0 also means greedy (argmax): that is SamplingParams.greedy.
WARPERS = (
    Warper("temperature", 0.0, apply_temperature, float, 0, 100, off_means="greedy",
           help="0 = greedy; > 0 samples (default: from generation_config.json)"),
    Warper("top_k", 0, top_k_filter, int, 0, MAX_TOP_K, narrow=top_k_candidates,
           help="keep the k most likely tokens (0 = off)"),
    Warper("top_p", 1.0, top_p_filter, float, 0, 1, low_open=True,
           help="nucleus probability mass (1 = off)"),
    Warper("min_p", 0.0, min_p_filter, float, 0, 1,
           help="drop tokens below min_p × the top probability (0 = off)"),
    Warper("repetition_penalty", 1.0, apply_repetition_penalty, float, 0, 100, low_open=True,
           every_row=True, help="> 1 discourages repeating tokens (1 = off)"),
)
_EVERY_ROW = tuple(w for w in WARPERS if w.every_row)
_SAMPLED = tuple(w for w in WARPERS if not w.every_row)
_NARROWS = tuple(w for w in _SAMPLED if w.narrow is not None)


def needs_seen(params) -> bool:
    """Whether a row with these settings needs the mask of the tokens it has seen."""
    return any(getattr(params, w.field) != w.off for w in _EVERY_ROW)


def select_next(
    logits: np.ndarray,
    params: Sequence,
    rngs: Sequence[np.random.Generator],
    seen: Sequence[np.ndarray | None] | None = None,
    keep_warped: bool = False,
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The next token of every row and its probability under the model.

    Args:
        logits: [rows, vocab] raw logits of the last position.
        params: one SamplingParams per row (temperature 0 → argmax).
        rngs: one generator per row (unused by greedy rows).
        seen: per row, a bool [vocab] mask of the tokens in its context (prompt + output), or
            None; only read for rows with a penalty on.
        keep_warped: also return each row's final logits (for the candidates).

    Returns:
        (tokens int64 [rows], probabilities float64 [rows]); a probability is the softmax of the
        raw logits (temperature 1, before penalty or filters) at the chosen token. With
        `keep_warped`, a third item: [rows, vocab] the logits each row drew from (greedy rows:
        after the penalty).

    Raises:
        ValueError: a row with a penalty on has no seen mask.
    """
    # Each warper runs once over all the rows that use it and the draws run together: at 48
    # rows a per-row loop of small numpy calls cost more than the arithmetic. Every warper
    # works row by row and numpy reduces each row of a 2-D array as it reduces a 1-D one, so
    # each row gets exactly the token it gets alone (tests/generation/test_select_rows.py).
    tokens = np.empty(logits.shape[0], dtype=np.int64)
    x = logits
    for w in _EVERY_ROW:
        rows = [i for i, p in enumerate(params) if getattr(p, w.field) != w.off]
        if rows:
            if seen is None or any(seen[i] is None for i in rows):
                raise ValueError(f"{w.field} needs the mask of seen tokens")
            x = logits.copy() if x is logits else x
            x[rows] = w.fn(x[rows], [seen[i] for i in rows], [getattr(params[i], w.field) for i in rows])
    greedy = [i for i, p in enumerate(params) if p.greedy]
    if greedy:
        tokens[greedy] = x[greedy].argmax(axis=-1)
    drawn = [i for i, p in enumerate(params) if not p.greedy]
    final = None
    if keep_warped:
        final = x.copy() if x is logits else x
    # Rows whose top-k keeps few tokens are warped and drawn on those alone (a row's token does
    # not depend on the rows beside it either way: each group is warped row by row).
    narrow = {i for i in drawn if any(0 < getattr(params[i], w.field) <= NARROW_TOP_K for w in _NARROWS)}
    for group, narrowed in (([i for i in drawn if i not in narrow], False),
                            ([i for i in drawn if i in narrow], True)):
        if group:
            _draw_group(x, group, params, rngs, tokens, final, narrowed)
    probs = token_probabilities(logits, tokens)
    if not keep_warped:
        return tokens, probs
    return tokens, probs, final


def _draw_group(x: np.ndarray, group: list[int], params: Sequence, rngs: Sequence,
                tokens: np.ndarray, final: np.ndarray | None, narrowed: bool) -> None:
    """Warp and draw the sampled rows `group` of `x` into `tokens` (and their final logits into
    `final`); with `narrowed` (every row's narrowing warper keeps at most NARROW_TOP_K tokens)
    that warper turns the rows into their candidates, and the rest of the walk and the draw run
    on those."""
    chosen = [params[i] for i in group]
    warped, ids = x[group], None
    for w in _SAMPLED:
        rows = [j for j, p in enumerate(chosen) if getattr(p, w.field) != w.off]
        values = [getattr(chosen[j], w.field) for j in rows]
        if narrowed and ids is None and w.narrow is not None and len(rows) == len(chosen):
            warped, ids = w.narrow(warped, values)
        elif len(rows) == len(chosen):
            warped = w.fn(warped, values)
        elif rows:
            warped[rows] = w.fn(warped[rows], values)
    if ids is None:
        tokens[group] = sample_rows(warped, [rngs[i] for i in group])
        if final is not None:
            final[group] = warped
        return
    picked = sample_packed(warped, [rngs[i] for i in group])
    tokens[group] = ids[np.arange(len(group)), picked]
    if final is not None:
        final[group] = -np.inf
        r, c = np.nonzero(ids >= 0)
        final[np.asarray(group)[r], ids[r, c]] = warped[r, c]


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


def sample_packed(logits: np.ndarray, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """`sample` for rows of candidates (`top_k_candidates`' values: -inf padding on the right),
    each row's draw the same whatever its padding: the running sums and the total are one
    sequential cumulative sum (adding a padded 0 changes neither).

    Args:
        logits: [rows, m] warped candidate logits.
        rngs: one generator per row; each draws one uniform number, as in `sample`.

    Returns:
        int64 [rows]: the position of each row's draw among its candidates.
    """
    top = logits.max(axis=-1)
    picked = np.empty(len(logits), dtype=np.int64)
    odd = np.flatnonzero(top == np.inf)  # overflowed logits: as in `sample` (ties kept in order)
    for i in odd:
        picked[i] = sample(logits[i], rngs[i])
    rows = np.flatnonzero(top != np.inf)
    if not len(rows):
        return picked
    weights = np.exp(logits[rows] - top[rows, None])
    cum = np.cumsum(weights, axis=-1, dtype=np.float64)
    targets = np.array([rngs[i].random() for i in rows]) * cum[:, -1]
    j = np.minimum((cum <= targets[:, None]).sum(axis=-1), weights.shape[1] - 1)
    for k in np.flatnonzero(weights[np.arange(len(rows)), j] == 0):
        j[k] = np.flatnonzero(weights[k, : j[k] + 1])[-1]  # as in `sample`
    picked[rows] = j
    return picked


def token_probabilities(logits: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """softmax(logits)[row, token] for each row, stably: one buffer for exp(logits - max), its
    float32 sums (pairwise: within ~2e-7 of float64's over 50k tokens) and float64 after."""
    top = logits.max(axis=-1, keepdims=True)
    e = np.subtract(logits, top)
    np.exp(e, out=e)
    log_z = np.log(e.sum(axis=-1).astype(np.float64)) + top[:, 0]
    return np.exp(logits[np.arange(len(tokens)), tokens].astype(np.float64) - log_z)


def _is_real(value) -> bool:
    try:
        return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    except OverflowError:  # an int beyond a float's range
        return False


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
