"""Sampling: correct in distribution, reproducible by seed, and every knob changes the output."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from generation import SamplingParams
from generation.sampling.pipeline import sample, select_next
from tests.generation.conftest import PROMPTS

LOGITS = np.array([[2.0, 1.5, 1.4, 0.3, 0.0, -0.5, -1.0, -3.0]], dtype=np.float32)


def expected_probs(params: SamplingParams) -> np.ndarray:
    """softmax after transformers' warpers, in transformers' order."""
    scores = torch.from_numpy(LOGITS.copy())
    ids = torch.zeros((1, 1), dtype=torch.long)
    warpers = [TemperatureLogitsWarper(params.temperature)]
    if params.top_k:
        warpers.append(TopKLogitsWarper(params.top_k))
    if params.top_p < 1:
        warpers.append(TopPLogitsWarper(params.top_p))
    if params.min_p > 0:
        warpers.append(MinPLogitsWarper(params.min_p))
    for w in warpers:
        scores = w(ids, scores)
    return torch.softmax(scores.double(), dim=-1)[0].numpy()


@pytest.mark.slow
@pytest.mark.parametrize("params", [
    SamplingParams(temperature=1.0),
    SamplingParams(temperature=0.6, top_k=4),
    SamplingParams(temperature=1.3, top_p=0.8),
    SamplingParams(temperature=1.0, min_p=0.2),
    SamplingParams(temperature=0.9, top_k=6, top_p=0.9, min_p=0.05),
])
def test_sampling_frequencies_match_the_filtered_softmax(params):
    n = 60_000
    rows = 3
    rng = np.random.default_rng(1234)
    counts = np.zeros(LOGITS.shape[1])
    logits = np.repeat(LOGITS, rows, axis=0)
    for _ in range(n // rows):
        tokens, _ = select_next(logits, [params] * rows, [rng] * rows)
        np.add.at(counts, tokens, 1)
    expected = expected_probs(params)
    freq = counts / counts.sum()
    # Filtered tokens never appear; the others within 0.01 (> 5 standard errors at n = 60,000).
    assert np.all(counts[expected == 0] == 0)
    np.testing.assert_allclose(freq, expected, atol=0.01)


def test_sample_survives_an_overflowing_temperature():
    x = np.array([1.0, 3.0, 3.0, -np.inf], dtype=np.float32) / np.float32(1e-38)
    rng = np.random.default_rng(0)
    assert {sample(x, rng) for _ in range(50)} == {1, 2}


def test_probabilities_are_the_raw_softmax_at_the_chosen_token():
    params = [SamplingParams(), SamplingParams(temperature=0.5, top_k=2, seed=0)]
    logits = np.repeat(LOGITS, 2, axis=0)
    tokens, probs = select_next(logits, params, [np.random.default_rng(0)] * 2)
    raw = torch.softmax(torch.from_numpy(LOGITS[0]).double(), dim=-1).numpy()
    assert tokens[0] == 0
    np.testing.assert_allclose(probs, raw[tokens], rtol=1e-6)


def texts(engine, params, prompt=PROMPTS[1], n=32):
    return [r.token_ids for r in engine.generate(prompt, params, n)]


def test_same_seed_same_text_different_seed_different_text(engine):
    a = SamplingParams(temperature=1.0, top_p=0.95, seed=7)
    first = engine.generate(PROMPTS[1], [a], 32)[0]
    again = engine.generate(PROMPTS[1], [a], 32)[0]
    other = engine.generate(PROMPTS[1], [SamplingParams(temperature=1.0, top_p=0.95, seed=8)], 32)[0]
    assert first.text == again.text and first.token_ids == again.token_ids
    assert first.text != other.text


def test_a_seeded_row_does_not_depend_on_its_neighbours(engine):
    row = SamplingParams(temperature=1.0, top_k=20, seed=11)
    # The greedy neighbour stops at EOS early on this prompt, so the batch also shrinks.
    prompt = PROMPTS[2]
    alone = texts(engine, [row], prompt)[0]
    greedy = texts(engine, [SamplingParams()], prompt)[0]
    side_by_side = texts(engine, [SamplingParams(), row, SamplingParams(temperature=2.0, seed=1)], prompt)
    assert side_by_side[0] == greedy and side_by_side[1] == alone
    assert len(greedy) < 32  # really finished early


@pytest.mark.parametrize("knob, off, on", [
    ("temperature", {}, {"temperature": 1.0, "seed": 0}),
    ("top_k", {"temperature": 1.0, "seed": 0}, {"temperature": 1.0, "seed": 0, "top_k": 1}),
    ("top_p", {"temperature": 1.0, "seed": 0}, {"temperature": 1.0, "seed": 0, "top_p": 0.01}),
    ("min_p", {"temperature": 1.0, "seed": 0}, {"temperature": 1.0, "seed": 0, "min_p": 1.0}),
    ("repetition_penalty", {}, {"repetition_penalty": 3.0}),
    ("seed", {"temperature": 1.0, "seed": 0}, {"temperature": 1.0, "seed": 1}),
])
def test_every_knob_changes_the_output(engine, knob, off, on):
    base, changed = texts(engine, [SamplingParams(**off), SamplingParams(**on)])
    assert base != changed, knob
    if knob in ("top_k", "top_p", "min_p"):
        # Filters this tight leave only the top token: sampling becomes greedy.
        assert changed == texts(engine, [SamplingParams()])[0]


def test_max_new_tokens_bounds_the_output(engine):
    for n in (1, 5, 17):
        (row,) = engine.generate(PROMPTS[0], [SamplingParams(temperature=1.0, seed=3)], n)
        assert len(row.token_ids) <= n
        assert row.finish_reason == ("eos" if row.token_ids[-1] in engine.eos_ids else "length")
    assert len(engine.generate(PROMPTS[0], [SamplingParams()], 17)[0].token_ids) == 17


def test_precision_changes_the_model(int8_onnx_dir, engine):
    from generation import Engine

    int8 = Engine.load(int8_onnx_dir, provider="cpu")
    assert int8.info["precision"] == "int8" and int8.info["onnx_file"].endswith("model_int8.onnx")
    fp32 = Engine.load(int8_onnx_dir, precision="fp32", provider="cpu")
    assert fp32.info["onnx_file"].endswith("model.onnx")
    a = int8.generate(PROMPTS[1], [SamplingParams()], 16)[0]
    b = fp32.generate(PROMPTS[1], [SamplingParams()], 16)[0]
    assert b.token_ids == engine.generate(PROMPTS[1], [SamplingParams()], 16)[0].token_ids
    assert [p for _, p in a.pieces] != [p for _, p in b.pieces]
