"""Streaming: whole characters only, the stream adds up to the decode, stats, truncation, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from generation import SamplingParams
from generation.detok import IncrementalDetokenizer
from tests.conftest import TINY_CORPUS
from tests.generation.conftest import PROMPTS
from tests.generation.sampling_helpers import validate

UNICODE = next(s for s in TINY_CORPUS if "🚀" in s)


def test_detokenizer_never_splits_a_character(engine):
    tok = engine.tokenizer
    ids = engine.encode(UNICODE)
    # The test is only meaningful if some token holds part of a character.
    assert any("\ufffd" in tok.decode([i]) for i in ids)
    detok = IncrementalDetokenizer(tok)
    deltas = [detok.add(i) for i in ids] + [detok.flush()]
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) == tok.decode(ids) == UNICODE
    assert "🚀" in deltas or any("🚀" in d for d in deltas)


def test_detokenizer_matches_the_full_decode_on_random_ids(engine):
    tok = engine.tokenizer
    rng = np.random.default_rng(0)
    for _ in range(20):
        ids = rng.integers(0, tok.get_vocab_size(), 40).tolist()
        detok = IncrementalDetokenizer(tok)
        released = ""
        for i in ids:
            released += detok.add(i)
            # What is released is final: always a prefix of the decode so far.
            assert tok.decode(detok.token_ids, skip_special_tokens=True).startswith(released)
        released += detok.flush()
        assert released == tok.decode(ids, skip_special_tokens=True)


def test_stream_adds_up_to_the_rows(engine):
    params = [SamplingParams(), SamplingParams(temperature=1.2, seed=5),
              SamplingParams(temperature=0.8, top_k=40, top_p=0.9, seed=6)]
    streamed = ["", "", ""]
    steps = 0
    for update in engine.stream(PROMPTS[2], params, 48):
        steps += 1
        assert update.prompt_truncated == 0
        for i, d in enumerate(update.deltas):
            streamed[i] += d
            assert update.rows[i].text == streamed[i]
    assert steps <= 48
    for text, row in zip(streamed, update.rows, strict=True):
        assert row.finished and row.finish_reason in ("eos", "length")
        assert text == row.text == engine.tokenizer.decode(row.token_ids, skip_special_tokens=True)
        assert "".join(p for p, _ in row.pieces) == row.text
        assert all(0 < prob <= 1 for _, prob in row.pieces)
        s = row.stats
        assert s.new_tokens == len(row.token_ids) and s.prompt_tokens == len(engine.encode(PROMPTS[2]))
        assert 0 < s.ttft_s <= s.elapsed_s and s.tokens_per_s > 0


def test_piece_probability_is_the_models(engine, hf_model):
    ids = engine.encode(PROMPTS[0])
    (row,) = engine.generate(PROMPTS[0], [SamplingParams()], 1)
    with torch.no_grad():
        probs = torch.softmax(hf_model(torch.tensor([ids])).logits[0, -1], -1)
    first = row.token_ids[0]
    assert row.pieces[0][1] == pytest.approx(float(probs[first]), abs=1e-5)


@pytest.mark.slow
def test_long_prompts_are_cut_from_the_left(engine, hf_model):
    from tests.generation.test_parity import hf_greedy

    prompt = " ".join(TINY_CORPUS)
    ids = engine.encode(prompt)
    max_new = 200
    keep = engine.context_size - max_new
    assert len(ids) > keep
    updates = list(engine.stream(prompt, [SamplingParams()], max_new))
    assert updates[0].prompt_truncated == len(ids) - keep
    row = updates[-1].rows[0]
    assert row.stats.prompt_tokens == keep
    assert row.token_ids == hf_greedy(hf_model, ids[-keep:], engine.eos_ids[0], max_new)


@pytest.mark.parametrize("args, message", [
    (("", [SamplingParams()], 8), "prompt must be a non-empty string"),
    (("   ", [SamplingParams()], 8), "prompt must be a non-empty string"),
    (("Hi", [], 8), "params must be a non-empty list"),
    (("Hi", [SamplingParams()], 0), "max_new_tokens must be an integer in \\[1, 255\\]"),
    (("Hi", [SamplingParams()], 256), "max_new_tokens"),
    (("Hi", [SamplingParams()], 2.5), "max_new_tokens"),
    (("Hi", [{"temperature": 1}], 8), "params\\[0\\] must be a SamplingParams"),
    (("Hi", [SamplingParams(temperature=-1)], 8), "temperature must be"),
    (("Hi", [SamplingParams(top_k=-2)], 8), "top_k must be"),
    (("Hi", [SamplingParams(top_p=0.0)], 8), "top_p must be"),
    (("Hi", [SamplingParams(min_p=1.5)], 8), "min_p must be"),
    (("Hi", [SamplingParams(repetition_penalty=0)], 8), "repetition_penalty must be"),
    (("Hi", [SamplingParams(seed=-1)], 8), "seed must be"),
    (("Hi", [SamplingParams(temperature=float("nan"))], 8), "temperature must be"),
    (("Hi", [SamplingParams(top_k=10**30)], 8), "top_k must be an integer in \\[0, 2147483647\\]"),
    # Beyond a float's range: still a clear "must be", not an OverflowError.
    (("Hi", [SamplingParams(temperature=10**400)], 8), "temperature must be a number"),
    (("abc\ud800", [SamplingParams()], 8), "prompt must be valid Unicode text"),
    (("abc\udcff\udcfe", [SamplingParams()], 8), "prompt must be valid Unicode text"),
])
def test_bad_arguments_raise_before_any_work(engine, args, message):
    # stream() itself raises, before the first step is asked for.
    with pytest.raises(ValueError, match=message):
        engine.stream(*args)


def test_every_problem_is_listed_at_once(engine):
    with pytest.raises(ValueError) as info:
        engine.stream("", [SamplingParams(top_k=-1, top_p=2.0)], 0)
    assert len(str(info.value).splitlines()) == 4
    with pytest.raises(ValueError, match="top_p"):
        validate(SamplingParams(top_p=2.0))
    validate(SamplingParams())


def test_stream_tokens_equals_stream_on_the_same_ids(engine):
    ids = engine.encode(PROMPTS[3])
    params = [SamplingParams(), SamplingParams(temperature=0.9, seed=2)]
    by_text = engine.generate(PROMPTS[3], params, 16)
    by_ids = list(engine.stream_tokens(ids, params, 16))[-1].rows
    assert [r.token_ids for r in by_ids] == [r.token_ids for r in by_text]
    for bad in ([], [engine.info["vocab_size"]], [-1], ["a"], None):
        with pytest.raises(ValueError, match="token_ids must be"):
            engine.stream_tokens(bad, params, 4)
