"""Greedy decoding against transformers `generate` and against uncached decoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from generation import SamplingParams
from tests.generation.conftest import PROMPTS

NEW_TOKENS = 64


def hf_greedy(hf_model, ids: list[int], eos: int, new_tokens: int = NEW_TOKENS,
              repetition_penalty: float = 1.0) -> list[int]:
    """transformers generate, greedy, with an explicit all-ones mask (so position ids = arange)."""
    input_ids = torch.tensor([ids])
    with torch.no_grad():
        out = hf_model.generate(input_ids, attention_mask=torch.ones_like(input_ids),
                                do_sample=False, max_new_tokens=new_tokens,
                                repetition_penalty=repetition_penalty,
                                eos_token_id=eos, pad_token_id=eos)
    return out[0, len(ids):].tolist()


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_matches_transformers(engine, hf_model, prompt):
    assert engine.info["graph"] == "decode"
    ids = engine.encode(prompt)
    (row,) = engine.generate(prompt, [SamplingParams()], NEW_TOKENS)
    assert row.token_ids == hf_greedy(hf_model, ids, engine.eos_ids[0])
    assert row.stats.prompt_tokens == len(ids)


@pytest.mark.slow
def test_side_by_side_batch_matches_transformers(engine, hf_model):
    # The longest prompt exceeds the local-attention window (8) of the tiny model.
    prompt = PROMPTS[-1]
    assert len(engine.encode(prompt)) > 8
    params = [SamplingParams(), SamplingParams(temperature=1.0, top_p=0.9, seed=3),
              SamplingParams(repetition_penalty=1.5), SamplingParams()]
    rows = engine.generate(prompt, params, NEW_TOKENS)
    ids = engine.encode(prompt)
    eos = engine.eos_ids[0]
    assert rows[0].token_ids == hf_greedy(hf_model, ids, eos)
    assert rows[3].token_ids == rows[0].token_ids
    assert rows[2].token_ids == hf_greedy(hf_model, ids, eos, repetition_penalty=1.5)
    assert rows[2].token_ids != rows[0].token_ids


@pytest.mark.parametrize("which", ["engine", "optimum_engine"])
def test_cached_equals_uncached(which, request):
    """Each step re-runs the whole sequence with no cache; the argmax must be the cached one."""
    engine = request.getfixturevalue(which)
    prompt = PROMPTS[-1]
    (row,) = engine.generate(prompt, [SamplingParams()], 24)
    ids = engine.encode(prompt)
    runner = engine.runner
    uncached = []
    for _ in range(len(row.token_ids)):
        logits = runner.prefill(runner.new_cache(1, 64), 0, ids + uncached)
        uncached.append(int(np.argmax(logits[-1])))
        if uncached[-1] in engine.eos_ids:
            break
    assert row.token_ids == uncached


@pytest.mark.parametrize("which", ["engine", "optimum_engine"])
def test_cache_grows_past_the_window_and_logits_match_pytorch(which, request, hf_model):
    engine = request.getfixturevalue(which)
    ids = engine.encode(PROMPTS[-1])[:12]
    runner = engine.runner
    cache = runner.new_cache(1, 16)
    runner.prefill(cache, 0, ids[:3])
    for t in ids[3:]:
        logits = runner.step(cache, np.array([t]))
    assert cache.lengths[0] == len(ids)
    with torch.no_grad():
        ref = hf_model(torch.tensor([ids])).logits[0, -1].numpy()
    np.testing.assert_allclose(logits[0], ref, atol=1e-4)
