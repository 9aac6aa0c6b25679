"""Each numpy warper against the transformers warper/processor of the same name.

Random logits from hypothesis, including exact ties (values drawn from a small set), top_p = 1,
top_k >= vocab and temperatures near 0. Where the two may legitimately differ, the test says
why: float32 rounding at a cut-off, and ties at a cut-off (we keep every tied token).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from generation.sampling.warpers import (
    apply_repetition_penalty,
    apply_temperature,
    first_crossing,
    min_p_filter,
    top_k_candidates,
    top_k_filter,
    top_p_filter,
)
from tests.generation.sampling_helpers import seen_mask, softmax

FAST = settings(max_examples=int(os.environ.get("WARPER_EXAMPLES", 150)), deadline=None, derandomize=True)


@st.composite
def logits_rows(draw, max_rows=3, max_vocab=80):
    rows = draw(st.integers(1, max_rows))
    vocab = draw(st.integers(1, max_vocab))
    if draw(st.booleans()):
        # Few distinct values: many exact ties.
        pool = draw(st.lists(st.floats(-8, 8, width=32), min_size=1, max_size=4))
        values = draw(st.lists(st.sampled_from(pool), min_size=rows * vocab, max_size=rows * vocab))
    else:
        values = draw(st.lists(st.floats(-20, 20, width=32), min_size=rows * vocab,
                               max_size=rows * vocab))
    return np.asarray(values, dtype=np.float32).reshape(rows, vocab)


def reference(warper, logits: np.ndarray, input_ids=None) -> np.ndarray:
    ids = torch.zeros((logits.shape[0], 1), dtype=torch.long) if input_ids is None else input_ids
    return warper(ids, torch.from_numpy(logits.copy())).numpy()


def kept(x: np.ndarray) -> np.ndarray:
    return x > -np.inf


@FAST
@given(logits_rows(), st.one_of(st.floats(1e-4, 0.01), st.floats(0.01, 10)))
def test_temperature(logits, temperature):
    ours = apply_temperature(logits, temperature)
    np.testing.assert_allclose(ours, reference(TemperatureLogitsWarper(temperature), logits),
                               rtol=1e-6)


def test_temperature_zero_leaves_greedy_rows_alone():
    x = np.array([[1.0, 3.0, 2.0]], dtype=np.float32)
    np.testing.assert_array_equal(apply_temperature(x, 0.0), x)


@FAST
@given(logits_rows(), st.integers(1, 100))
def test_top_k(logits, k):
    # Ties with the k-th value are kept by both (they keep scores >= the k-th largest).
    np.testing.assert_array_equal(top_k_filter(logits, k), reference(TopKLogitsWarper(k), logits))


@pytest.mark.parametrize("vocab", [255, 256, 1000, 50257])
def test_top_k_over_a_long_vocabulary(vocab):
    # Past one block (256 tokens) the k-th value comes from the block maxima's bound: every k
    # from 1 to beyond the blocks' count, ties at the cut-off, a row with all values equal.
    rng = np.random.default_rng(vocab)
    x = (rng.standard_normal((4, vocab)) * 3).astype(np.float32)
    x[1] = np.round(x[1])  # many exact ties
    x[2] = 0.5
    x[3, ::7] = x[3].max()  # the top value tied across blocks
    for k in (1, 2, 40, vocab // 256, vocab // 256 + 1, 300, vocab - 1):
        if k > 0:
            np.testing.assert_array_equal(top_k_filter(x, k), reference(TopKLogitsWarper(k), x), err_msg=str(k))


@pytest.mark.parametrize("vocab", [30, 50257])
def test_top_k_candidates_are_what_top_k_filter_keeps(vocab):
    rng = np.random.default_rng(vocab)
    x = (rng.standard_normal((5, vocab)) * 3).astype(np.float32)
    x[2] = np.round(x[2])  # ties: that row keeps more than k, so the others are padded
    ks = [1, 5, 40, 0, 10]
    values, ids = top_k_candidates(x, ks)
    dense = top_k_filter(x, ks)
    for i in range(len(x)):
        keep = np.flatnonzero(dense[i] > -np.inf)
        n = len(keep)
        np.testing.assert_array_equal(ids[i, :n], keep)  # in token-id order
        np.testing.assert_array_equal(values[i, :n], x[i, keep])
        assert (ids[i, n:] == -1).all() and (values[i, n:] == -np.inf).all()


def test_top_k_zero_and_at_least_vocab_are_off():
    x = np.random.default_rng(0).standard_normal((2, 10)).astype(np.float32)
    np.testing.assert_array_equal(top_k_filter(x, 0), x)
    np.testing.assert_array_equal(top_k_filter(x, 10), x)
    np.testing.assert_array_equal(top_k_filter(x, 50), x)


def _tail_mass_before(row: np.ndarray) -> np.ndarray:
    """Per token: probability of the tokens strictly more likely than it (float64)."""
    p = softmax(row.astype(np.float64))
    return np.array([p[p > v].sum() for v in p])


@FAST
@given(logits_rows(), st.one_of(st.just(1.0), st.floats(0.01, 1.0)))
def test_top_p(logits, top_p):
    ours = kept(top_p_filter(logits, top_p))
    theirs = kept(reference(TopPLogitsWarper(top_p), logits))
    assert ours.any(axis=1).all()
    if top_p == 1.0:
        assert ours.all()
    for i in np.flatnonzero((ours != theirs).any(axis=1)):
        row = logits[i]
        # Differences are allowed only at the cut-off: a token whose more likely tokens hold
        # top_p up to float32 rounding, or a token tied with one transformers kept.
        before = _tail_mass_before(row)
        for j in np.flatnonzero(ours[i] != theirs[i]):
            tied = np.isin(row[j], row[theirs[i]])
            assert abs(before[j] - top_p) < 1e-5 or (ours[i, j] and tied), (row, top_p, j)


@FAST
@given(logits_rows(), st.one_of(st.just(0.0), st.floats(1e-3, 1.0)))
def test_min_p(logits, min_p):
    ours = min_p_filter(logits, min_p)
    theirs = reference(MinPLogitsWarper(min_p), logits)
    if min_p == 0.0:
        np.testing.assert_array_equal(ours, logits)
    mismatch = kept(ours) != kept(theirs)
    # Only where a probability sits on the min_p × top threshold up to rounding.
    p = softmax(logits.astype(np.float64))
    ratio = p / p.max(axis=1, keepdims=True)
    assert np.all(np.abs(ratio[mismatch] - min_p) < 1e-5)
    assert kept(ours).any(axis=1).all()


@FAST
@given(logits_rows(), st.floats(0.1, 5.0), st.data())
def test_repetition_penalty(logits, penalty, data):
    rows, vocab = logits.shape
    ids = [data.draw(st.lists(st.integers(0, vocab - 1), min_size=1, max_size=12)) for _ in range(rows)]
    length = max(len(r) for r in ids)
    # transformers takes an id matrix; repeat each row's first id as padding (no new ids).
    matrix = torch.tensor([r + [r[0]] * (length - len(r)) for r in ids])
    ours = apply_repetition_penalty(logits, seen_mask(ids, vocab), penalty)
    theirs = reference(RepetitionPenaltyLogitsProcessor(penalty), logits, matrix)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)


def test_per_row_parameters_apply_to_their_own_row():
    x = np.tile(np.linspace(0, 5, 10, dtype=np.float32), (3, 1))
    out = top_k_filter(x, [1, 3, 0])
    assert kept(out).sum(axis=1).tolist() == [1, 3, 10]
    with pytest.raises(ValueError, match="one per row"):
        top_k_filter(x, [1, 2])


def test_warpers_do_not_modify_their_input():
    x = np.random.default_rng(1).standard_normal((2, 50)).astype(np.float32)
    before = x.copy()
    for out in (top_k_filter(x, 3), top_p_filter(x, 0.5), min_p_filter(x, 0.3),
                apply_temperature(x, 0.5), apply_repetition_penalty(x, x > 0, 2.0)):
        assert out.shape == x.shape
    np.testing.assert_array_equal(x, before)


def test_top_p_widens_its_candidate_set_on_flat_distributions():
    # 5,000 nearly equal logits: top_p=0.9 needs ~4,500 tokens, far beyond the first candidates.
    x = np.random.default_rng(2).normal(0, 0.01, (1, 5000)).astype(np.float32)
    theirs = kept(reference(TopPLogitsWarper(0.9), x))
    ours = kept(top_p_filter(x, 0.9))
    assert abs(int(ours.sum()) - int(theirs.sum())) <= 1
    assert ours.sum() > 4000


@FAST
@given(st.integers(1, 3000), st.floats(0.0, 1.0), st.sampled_from(["left", "right"]), st.data())
def test_first_crossing_equals_searchsorted_on_the_cumsum(n, fraction, side, data):
    seed = data.draw(st.integers(0, 2**16))
    weights = np.random.default_rng(seed).random(n).astype(np.float32)
    weights[weights < 0.3] = 0  # runs of zero weight, as after filtering
    cum = np.cumsum(weights, dtype=np.float64)
    # Targets on the running sums themselves are the boundary cases; others in between.
    target = cum[int(fraction * (n - 1))] if data.draw(st.booleans()) else fraction * cum[-1]
    expected = int(np.searchsorted(cum, target, side))
    got = first_crossing(weights, target, side)
    # Block sums are added in another order than one long cumsum: allow a neighbour only
    # where the two running sums differ by rounding at the target.
    assert got == expected or abs(cum[min(got, n - 1)] - target) < 1e-9 * max(cum[-1], 1)
