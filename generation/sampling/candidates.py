"""The candidates behind a token: the top K tokens by raw probability, as the explorer shows them.

Computed on the loop's thread next to `select_next`, for the rows of requests that asked
(`candidates=K`), vectorised over those rows: one `argpartition` over the vocabulary per row
(no full sort), softmax and entropy in a few passes with float64 sums. Entropies are in nats.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Candidates:
    """The K most likely tokens (by raw probability) where one token was emitted.

    Attributes:
        token_ids: the K token ids, best first by raw probability (ties: lower id first).
        raw: their probabilities under the raw logits (softmax, temperature 1, no penalty).
        warped: their probabilities under the row's own distribution (after penalty,
            temperature, top-k, top-p, min-p; 0 where filtered out; a greedy row's is the point
            mass on its argmax after the penalty); None for a beam row.
        beam_scores: a beam row's running score (sum of log-probs) if that candidate were
            appended to the beam; None for other rows.
        raw_entropy: entropy of the raw distribution, in nats.
        warped_entropy: entropy of the row's distribution, in nats (0 for greedy); None for a
            beam row.
        emitted_rank: how many tokens have a higher raw probability than the emitted one
            (0 = the top raw token); it may be K or more.
    """

    token_ids: tuple[int, ...]
    raw: tuple[float, ...]
    warped: tuple[float, ...] | None
    beam_scores: tuple[float, ...] | None
    raw_entropy: float
    warped_entropy: float | None
    emitted_rank: int


def entropy(logp: np.ndarray) -> np.ndarray:
    """Entropy in nats of each row of log-probabilities (-inf entries contribute 0)."""
    finite = np.maximum(logp, -1e30)  # exp(-1e30) = 0, and 0 * -1e30 = 0 (no 0 * -inf = nan)
    p = np.exp(finite)
    return -(p * finite).sum(axis=-1)


def log_partition(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's log normaliser and softmax entropy (nats), in two passes over the vocabulary.

    With d = x - max and e = exp(d): log Z = max + log sum e, and the entropy is
    log sum e - sum(e * d) / sum e; sums accumulate in float64.
    """
    top = logits.max(axis=-1, keepdims=True)
    d = np.maximum(logits - top, np.float32(-1e30))  # -inf (filtered) → e = 0, e * d = 0
    e = np.exp(d)
    total = e.sum(axis=-1, dtype=np.float64)
    # (No np.dot / einsum: a BLAS call here leaves OpenBLAS threads spinning on the cores the
    # next ONNX Runtime step needs; measured: that step took 31 instead of 18 ms.)
    weighted = (e * d).sum(axis=-1, dtype=np.float64)
    return top[:, 0].astype(np.float64) + np.log(total), np.log(total) - weighted / total


def top_k(logp: np.ndarray, k: int) -> np.ndarray:
    """The ids of each row's k largest entries, best first, ties by lower id (k <= vocab)."""
    vocab = logp.shape[-1]
    k = min(k, vocab)
    part = np.argpartition(logp, vocab - k, axis=-1)[:, vocab - k:] if k < vocab else \
        np.broadcast_to(np.arange(vocab), logp.shape)
    values = np.take_along_axis(logp, part, axis=-1)
    order = np.lexsort((part, -values), axis=-1)
    return np.take_along_axis(part, order, axis=-1)


def ranks(logp: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """How many entries of each row are larger than the row's `tokens` entry."""
    at = logp[np.arange(len(tokens)), tokens]
    return (logp > at[:, None]).sum(axis=-1)


def _probs_at(logits: np.ndarray, log_z: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """softmax(logits)[row, ids] in float64 from the rows' log normalisers."""
    return np.exp(np.take_along_axis(logits, ids, axis=-1).astype(np.float64) - log_z[:, None])


def row_candidates(raw: np.ndarray, warped: np.ndarray, greedy: Sequence[bool],
                   tokens: np.ndarray, k: int) -> list[Candidates]:
    """The candidates of sampled or greedy rows.

    Args:
        raw: float32 [rows, vocab] raw logits.
        warped: [rows, vocab] each row's logits after its warpers (`select_next(...,
            keep_warped=True)`); for greedy rows, after the penalty.
        greedy: per row, whether it takes the argmax (its distribution is then the point mass
            on `tokens`).
        tokens: int64 [rows] the emitted tokens.
        k: candidates per row, >= 1 (clamped to the vocabulary).

    Returns:
        One Candidates per row.
    """
    # A handful of passes over the vocabulary per row, in the logits' own float32 (sums in
    # float64): log-softmax is monotone, so the top K and the ranks come from the logits.
    ids = top_k(raw, k)
    log_z, raw_h = log_partition(raw)
    raw_p, rank = _probs_at(raw, log_z, ids), ranks(raw, tokens)
    point = np.asarray(greedy, dtype=bool)
    warped_p = (ids == tokens[:, None]).astype(np.float64)  # greedy: the point mass
    warped_h = np.zeros(len(ids))
    drawn = np.flatnonzero(~point)
    if len(drawn):
        w = np.asarray(warped)[drawn]
        w_log_z, warped_h[drawn] = log_partition(w)
        warped_p[drawn] = _probs_at(w, w_log_z, ids[drawn])
    return [Candidates(tuple(ids[i].tolist()), tuple(raw_p[i].tolist()), tuple(warped_p[i].tolist()),
                       None, float(raw_h[i]), float(warped_h[i]), int(rank[i]))
            for i in range(len(ids))]


def beam_candidates(logp: np.ndarray, scores: np.ndarray, parents: np.ndarray,
                    tokens: np.ndarray, k: int) -> list[Candidates]:
    """The candidates behind beam continuations: each continues beam parents[j] with tokens[j].

    Args:
        logp: [beams, vocab] log-softmax of each running beam's raw logits.
        scores: [beams] the beams' running scores (sum of log-probs) before this token.
        parents, tokens: int [n] the continuations.
        k: candidates per continuation, >= 1 (clamped to the vocabulary).

    Returns:
        One Candidates per continuation (warped None, beam_scores set).
    """
    rows = logp[parents].astype(np.float64)
    ids = top_k(rows, k)
    lp = np.take_along_axis(rows, ids, axis=-1)
    totals = scores[parents].astype(np.float64)[:, None] + lp
    raw_h, rank = entropy(rows), ranks(rows, tokens)
    return [Candidates(tuple(ids[i].tolist()), tuple(np.exp(lp[i]).tolist()), None,
                       tuple(totals[i].tolist()), float(raw_h[i]), None, int(rank[i]))
            for i in range(len(ids))]
