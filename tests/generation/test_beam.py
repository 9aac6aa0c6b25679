"""generation.beam against transformers' own beam search (generate(num_beams=N)) on a tiny GPT-Neo.

The model is the tests' tiny GPT-Neo with its EOS embedding scaled up, so that hypotheses end
at EOS often enough for the finishing rules (length penalty, the three early_stopping modes) to
matter; our search is fed by uncached PyTorch forwards, so only the search itself is compared.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from generation.sampling.beam import BeamSearch
from tests.conftest import build_tiny_gpt_neo

VOCAB, EOS, MAX_NEW = 400, 0, 12
PROMPTS = [np.random.default_rng(seed).integers(1, VOCAB, size=3 + 2 * seed).tolist() for seed in range(10)]


@pytest.fixture(scope="module")
def model():
    model = build_tiny_gpt_neo(VOCAB, EOS)
    with torch.no_grad():
        model.transformer.wte.weight[EOS] *= 1.5  # tied lm_head: EOS becomes likely
    return model


def ours(model, ids, num_beams, length_penalty, early_stopping):
    search = BeamSearch(num_beams, MAX_NEW, (EOS,), length_penalty, early_stopping)
    beams = [list(ids)] * num_beams
    while not search.done:
        with torch.no_grad():
            logits = model(torch.tensor(beams)).logits[:, -1].numpy()
        parents, tokens = search.step(logits)
        beams = [beams[p] + [int(t)] for p, t in zip(parents, tokens, strict=True)]
    return search


def theirs(model, ids, num_beams, length_penalty, early_stopping):
    input_ids = torch.tensor([ids])
    with torch.no_grad():
        out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), do_sample=False,
                             num_beams=num_beams, max_new_tokens=MAX_NEW, length_penalty=length_penalty,
                             early_stopping=early_stopping, eos_token_id=EOS, pad_token_id=EOS,
                             output_scores=True, return_dict_in_generate=True)
    return out.sequences[0, len(ids):].tolist(), float(out.sequences_scores[0])


@pytest.mark.parametrize("early_stopping", [False, True, "never"])
@pytest.mark.parametrize("length_penalty", [0.0, 1.0, 2.0])
@pytest.mark.parametrize("num_beams", [2, 4])
def test_best_hypothesis_equals_transformers(model, num_beams, length_penalty, early_stopping):
    for ids in PROMPTS:
        search = ours(model, ids, num_beams, length_penalty, early_stopping)
        best = search.best()
        tokens, score = theirs(model, ids, num_beams, length_penalty, early_stopping)
        # transformers pads shorter hypotheses with the pad token (EOS here) to the longest one
        # it returns; ours keeps each hypothesis at its own length.
        assert list(best.token_ids) == tokens[:len(best.token_ids)], (ids, best, tokens)
        assert all(t == EOS for t in tokens[len(best.token_ids):])
        assert best.score == pytest.approx(score, abs=1e-4)
        assert len(search.finished) == num_beams
        assert [h.score for h in search.finished] == sorted((h.score for h in search.finished), reverse=True)


def test_the_finishing_rules_change_the_result(model):
    """The parity above means something only if the knobs matter on these prompts."""
    def best(ids, lp, es):
        return ours(model, ids, 2, lp, es).best().token_ids

    by_mode = [{best(ids, 1.0, es) for es in (False, True, "never")} for ids in PROMPTS]
    by_penalty = [{best(ids, lp, False) for lp in (0.0, 1.0, 2.0)} for ids in PROMPTS]
    assert any(len(results) > 1 for results in by_mode)
    assert any(len(results) > 1 for results in by_penalty)
    ends = [best(ids, 1.0, False)[-1] == EOS for ids in PROMPTS]
    assert any(ends) and not all(ends)  # hypotheses end at EOS and at the length limit


def test_one_beam_is_greedy(model):
    for ids in PROMPTS[:3]:
        best = ours(model, ids, 1, 1.0, False).best()
        with torch.no_grad():
            greedy = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                    do_sample=False, max_new_tokens=MAX_NEW, eos_token_id=EOS, pad_token_id=EOS)
        assert list(best.token_ids) == greedy[0, len(ids):].tolist()[:len(best.token_ids)]


def test_parents_and_tokens_extend_the_running_beams(model):
    search = BeamSearch(3, MAX_NEW, (EOS,))
    before = list(search.beams)
    logits = np.random.default_rng(0).standard_normal((3, VOCAB)).astype(np.float32)
    parents, tokens = search.step(logits)
    assert all(p == 0 for p in parents)  # only the first beam is live at the start
    assert search.beams == [before[p] + (int(t),) for p, t in zip(parents, tokens, strict=True)]
    assert len(set(tokens.tolist())) == 3 and EOS not in tokens.tolist()
