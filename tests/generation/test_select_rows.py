"""select_next warps and draws all rows at once; each row must get exactly the token that the
per-row path (`warp` then argmax or `sample`, with the row's own generator) gives it alone."""

from __future__ import annotations

import numpy as np
import pytest

from generation.sampling.params import SamplingParams
from generation.sampling.pipeline import sample, select_next
from generation.sampling.warpers import first_crossing, first_crossing_rows
from tests.generation.sampling_helpers import warp


def random_params(rng: np.random.Generator, seed: int) -> SamplingParams:
    return SamplingParams(
        temperature=float(rng.choice([0.0, 0.0, 0.7, 1.0, 1.5, 1e-30])),
        top_k=int(rng.choice([0, 0, 1, 5, 40])),
        top_p=float(rng.choice([1.0, 1.0, 0.9, 0.5, 1e-6])),
        min_p=float(rng.choice([0.0, 0.0, 0.05, 0.3])),
        repetition_penalty=float(rng.choice([1.0, 1.0, 1.3, 0.8])),
        seed=seed)


def one_by_one(logits, params, seeds, seen):
    tokens = []
    for i, p in enumerate(params):
        x = warp(logits[i:i + 1], p, seen[i][None])[0]
        tokens.append(int(x.argmax()) if p.greedy else sample(x, np.random.default_rng(seeds[i])))
    return tokens


@pytest.mark.parametrize("vocab", [50, 700, 8192, 50257])
def test_every_row_draws_what_it_draws_alone(vocab):
    rng = np.random.default_rng(vocab)
    for trial in range(40 if vocab < 50000 else 6):
        rows = int(rng.integers(1, 20))
        scale = rng.choice([0.5, 3.0, 12.0])  # flat to peaked distributions
        logits = (rng.standard_normal((rows, vocab)) * scale).astype(np.float32)
        if trial % 5 == 0:
            logits[:, : vocab // 3] = logits[:, :1]  # exact ties
        seen = rng.random((rows, vocab)) < 0.05
        seeds = [int(s) for s in rng.integers(0, 2**31, rows)]
        params = [random_params(rng, s) for s in seeds]
        tokens, probs = select_next(logits, params, [np.random.default_rng(s) for s in seeds], list(seen))
        assert tokens.tolist() == one_by_one(logits, params, seeds, seen), (trial, params)
        top = logits.max(axis=-1)
        expected = np.exp(logits[np.arange(rows), tokens].astype(np.float64) - top) / \
            np.exp(logits - top[:, None]).sum(axis=-1, dtype=np.float64)
        np.testing.assert_allclose(probs, expected, rtol=1e-6)


def test_a_top_k_row_draws_the_same_beside_wider_rows():
    # Top-k rows are drawn on their candidates, padded to the widest row of the step: a row's
    # token and final logits must not depend on that padding (nor on the rows beside it).
    rng = np.random.default_rng(7)
    vocab = 50257
    logits = (rng.standard_normal((6, vocab)) * 3).astype(np.float32)
    logits[1] = np.round(logits[1])  # ties: this row keeps far more than its k
    params = [SamplingParams(temperature=t, top_k=k, top_p=p, min_p=m, seed=s)
              for t, k, p, m, s in [(0.8, 40, 0.9, 0.0, 1), (1.0, 40, 1.0, 0.0, 2), (0.7, 5, 0.5, 0.1, 3),
                                    (1.2, 1000, 0.95, 0.0, 4), (0.9, 3, 1.0, 0.0, 5), (0.0, 0, 1.0, 0.0, 6)]]
    for trial in range(30):
        seeds = [int(s) for s in rng.integers(0, 2**31, len(params))]
        tokens, _, final = select_next(logits, params, [np.random.default_rng(s) for s in seeds],
                                       keep_warped=True)
        for i, p in enumerate(params):
            alone = select_next(logits[i:i + 1], [p], [np.random.default_rng(seeds[i])], keep_warped=True)
            assert alone[0][0] == tokens[i], (trial, i)
            np.testing.assert_array_equal(alone[2][0], final[i])
            np.testing.assert_array_equal(final[i], warp(logits[i:i + 1], p)[0])  # the dense walk's logits
        assert tokens.tolist() == one_by_one(logits, params, seeds, np.zeros(logits.shape, bool))


@pytest.mark.parametrize("n", [7, 1024, 1025, 4096, 8192, 50257])
@pytest.mark.parametrize("side", ["left", "right"])
def test_first_crossing_rows_equals_first_crossing(n, side):
    rng = np.random.default_rng(n)
    weights = rng.random((9, n)).astype(np.float32) ** 8
    weights[2, n // 2:] = 0
    totals = weights.sum(axis=-1, dtype=np.float64)
    targets = totals * np.array([0, 1e-9, 0.1, 0.5, 0.9, 0.999999, 1.0, 1.5, 0.3])
    expected = [first_crossing(w, t, side) for w, t in zip(weights, targets, strict=True)]
    assert first_crossing_rows(weights, targets, side).tolist() == expected
