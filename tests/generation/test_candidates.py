"""The candidates behind every token (`candidates=K`) against references: the engine's own
teacher-forced scorer for the raw probabilities, transformers' warpers for the warped ones.

Each prompt starts with EOS, so the scorer (which conditions the first token on EOS) sees
exactly the context the engine decoded from; scoring works on token ids, never re-tokenized text.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from generation import Candidates, SamplingParams
from generation.score import score_tokens
from tests.generation.conftest import PROMPTS

K, NEW = 5, 12
STRATEGIES = [
    SamplingParams(),
    SamplingParams(repetition_penalty=1.4),
    SamplingParams(temperature=0.7, seed=1),
    SamplingParams(temperature=1.3, top_k=7, seed=2),
    SamplingParams(temperature=1.0, top_p=0.8, seed=3),
    SamplingParams(temperature=0.9, min_p=0.1, repetition_penalty=1.2, seed=4),
]


def prompt_ids(engine, prompt: str) -> list[int]:
    return [engine.eos_ids[0]] + engine.encode(prompt)


def teacher_forced(engine, ids: list[int], new: list[int]) -> np.ndarray:
    """float64 [len(new), vocab] raw logits at each new token's position, one uncached call."""
    runner = engine.runner
    cache = runner.new_cache(1, len(ids) + len(new))
    return runner.prefill(cache, 0, ids + new[:-1], keep=len(new)).astype(np.float64)


def reference_warped(params: SamplingParams, logits: np.ndarray, context: list[int]) -> np.ndarray:
    """softmax after transformers' processors in generate's order (penalty, temperature, top-k,
    top-p, min-p); a greedy row's distribution is the point mass on its argmax."""
    scores = torch.from_numpy(logits[None].astype(np.float32))
    ids = torch.tensor([context])
    if params.repetition_penalty != 1:
        scores = RepetitionPenaltyLogitsProcessor(params.repetition_penalty)(ids, scores)
    if params.greedy:
        point = np.zeros(logits.shape[-1])
        point[int(scores.argmax())] = 1.0
        return point
    warpers = [TemperatureLogitsWarper(params.temperature)]
    warpers += [TopKLogitsWarper(params.top_k)] if params.top_k else []
    warpers += [TopPLogitsWarper(params.top_p)] if params.top_p < 1 else []
    warpers += [MinPLogitsWarper(params.min_p)] if params.min_p else []
    for w in warpers:
        scores = w(ids, scores)
    return torch.softmax(scores.double(), dim=-1)[0].numpy()


def entropy(p: np.ndarray) -> float:
    return float(-(p[p > 0] * np.log(p[p > 0])).sum())


@pytest.mark.parametrize("prompt", PROMPTS)
def test_candidates_equal_the_references(engine, prompt):
    ids = prompt_ids(engine, prompt)
    rows = list(engine.stream_tokens(ids, STRATEGIES, NEW, candidates=K))[-1].rows
    for params, row in zip(STRATEGIES, rows, strict=True):
        assert len(row.candidates) == len(row.token_ids)
        logits = teacher_forced(engine, ids, row.token_ids)
        logp = score_tokens(engine.runner, ids[1:] + row.token_ids, ids[0], engine.context_size).logprobs
        for j, (token, c) in enumerate(zip(row.token_ids, row.candidates, strict=True)):
            raw = np.exp(logits[j] - logits[j].max())
            raw /= raw.sum()
            order = np.argsort(-raw, kind="stable")[:K]
            assert c.token_ids == tuple(order.tolist())
            np.testing.assert_allclose(c.raw, raw[order], rtol=1e-5, atol=1e-7)
            assert c.raw_entropy == pytest.approx(entropy(raw), abs=1e-5)
            assert c.emitted_rank == int((raw > raw[token]).sum())
            # The engine's own scorer, teacher-forced on the same ids, gives the emitted token's.
            if token in c.token_ids:
                assert c.raw[c.token_ids.index(token)] == pytest.approx(np.exp(logp[len(ids) - 1 + j]), rel=1e-5)
            warped = reference_warped(params, logits[j], ids + row.token_ids[:j])
            np.testing.assert_allclose(c.warped, warped[order], atol=1e-6)
            assert c.warped_entropy == pytest.approx(entropy(warped), abs=1e-5)
            assert c.beam_scores is None
    assert any(c.emitted_rank > 0 for row in rows[2:] for c in row.candidates)  # samples stray
    assert any(c.emitted_rank >= K for row in rows[2:] for c in row.candidates)  # beyond the top K


def test_beam_candidates_follow_the_best_hypothesis(engine):
    ids = prompt_ids(engine, PROMPTS[-1])
    (row,) = list(engine.stream_tokens(ids, [SamplingParams(num_beams=3)], NEW, candidates=K))[-1].rows
    assert len(row.candidates) == len(row.token_ids)
    logits = teacher_forced(engine, ids, row.token_ids)
    running = 0.0
    for j, (token, c) in enumerate(zip(row.token_ids, row.candidates, strict=True)):
        logp = logits[j] - logits[j].max()
        logp -= np.log(np.exp(logp).sum())
        order = np.argsort(-logp, kind="stable")[:K]
        assert c.token_ids == tuple(order.tolist()) and c.warped is None and c.warped_entropy is None
        np.testing.assert_allclose(c.beam_scores, running + logp[order], atol=1e-4)
        assert c.emitted_rank == int((logp > logp[token]).sum())
        running += logp[token]
    assert row.hypotheses[0].score == pytest.approx(running / len(row.token_ids), abs=1e-4)


def test_candidates_are_off_by_default_and_k_is_clamped_to_the_vocabulary(engine):
    (off,) = engine.generate("We propose", [SamplingParams()], 4)
    assert off.candidates == []
    (wide,) = engine.generate("We propose", [SamplingParams(temperature=1.0, seed=0)], 3,
                              candidates=10**9)
    assert all(len(c.token_ids) == engine.vocab_size for c in wide.candidates)
    assert all(sum(c.raw) == pytest.approx(1.0) for c in wide.candidates)
    assert isinstance(wide.candidates[0], Candidates)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "5", None])
def test_a_bad_candidates_value_is_refused(engine, bad):
    with pytest.raises(ValueError, match="candidates must be an integer >= 0"):
        engine.generate("We propose", [SamplingParams()], 4, candidates=bad)
