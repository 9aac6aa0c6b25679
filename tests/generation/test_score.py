"""Engine.score: teacher-forced log-probabilities against PyTorch, on both graphs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import TINY_CORPUS


def torch_logprobs(hf_model, inputs: list[int], targets: list[int]) -> np.ndarray:
    """ln p(targets[i] | inputs[:i+1]) from one PyTorch forward."""
    with torch.no_grad():
        logits = hf_model(torch.tensor([inputs])).logits[0].double()
    return torch.log_softmax(logits, -1)[torch.arange(len(targets)), targets].numpy()


@pytest.mark.parametrize("which", ["engine", "window_engine", "optimum_engine"])
def test_score_matches_pytorch(which, request, hf_model):
    engine = request.getfixturevalue(which)
    text = " ".join(TINY_CORPUS[:3])  # ~50 tokens: several calls of up to CHUNK tokens
    result = engine.score(text)
    ids = engine.encode(text)
    assert result.token_ids == ids and result.logprobs.shape == (len(ids),)
    expected = torch_logprobs(hf_model, [engine.eos_ids[0]] + ids[:-1], ids)
    np.testing.assert_allclose(result.logprobs, expected, atol=1e-4)
    assert result.perplexity == pytest.approx(np.exp(-expected.mean()), rel=1e-4)
    # One token: conditioned on EOS alone.
    one = engine.score(engine.tokenizer.decode(ids[:1]))
    np.testing.assert_allclose(one.logprobs, expected[:1], atol=1e-4)


@pytest.mark.parametrize("which", ["engine", "window_engine"])
def test_texts_beyond_the_context_use_a_sliding_window(which, request, hf_model):
    """Input p is predicted from inputs 0..p while p < context, then from h*(p//h - 1)..p
    (h = context // 2), as score_tokens documents; checked against PyTorch on those windows."""
    engine = request.getfixturevalue(which)
    context, half = engine.context_size, engine.context_size // 2
    ids = engine.encode(" ".join(TINY_CORPUS * 3))[: 2 * context + 37]
    assert len(ids) == 2 * context + 37  # three windows
    result = engine.score(engine.tokenizer.decode(ids))
    assert result.token_ids == ids
    inputs = [engine.eos_ids[0]] + ids[:-1]
    expected = np.empty(len(ids))
    expected[:context] = torch_logprobs(hf_model, inputs[:context], ids[:context])
    for first in range(context, len(ids), half):  # each window's new positions
        start, stop = first - half, min(first + half, len(ids))
        expected[first:stop] = torch_logprobs(hf_model, inputs[start:stop], ids[start:stop])[half:]
    np.testing.assert_allclose(result.logprobs, expected, atol=1e-4)


def test_bad_texts_are_clear_errors(engine):
    for bad in ("", None, 3):
        with pytest.raises(ValueError, match="text must be a string that produces at least one token"):
            engine.score(bad)


def test_bits_per_byte_matches_pytorch_per_text(engine, hf_model):
    """Each text scored alone: -sum(log2 p) / UTF-8 bytes from PyTorch, averaged over texts;
    perplexity over all tokens."""
    from generation.score import bits_per_byte

    texts = [TINY_CORPUS[0], TINY_CORPUS[1] + " — naïve café"]  # multi-byte characters count as bytes
    per_text, nll, tokens = [], 0.0, 0
    for text in texts:
        ids = engine.encode(text)
        lp = torch_logprobs(hf_model, [engine.eos_ids[0]] + ids[:-1], ids)
        per_text.append(-lp.sum() / np.log(2) / len(text.encode("utf-8")))
        nll, tokens = nll - lp.sum(), tokens + len(ids)
    got = bits_per_byte(engine.score, texts)
    assert got["bits_per_byte"] == pytest.approx(np.mean(per_text), rel=1e-5)
    assert got["perplexity"] == pytest.approx(np.exp(nll / tokens), rel=1e-5)
    assert (got["texts"], got["tokens"]) == (2, tokens)
    assert got["bytes"] == sum(len(t.encode("utf-8")) for t in texts) > sum(len(t) for t in texts)
    with pytest.raises(ValueError, match="empty"):
        bits_per_byte(engine.score, ["fine", ""])
    with pytest.raises(ValueError, match="no texts"):
        bits_per_byte(engine.score, [])
