"""Beam rows in the engine against transformers' `generate(num_beams=N)`, and beside other rows.

The parity model is the tiny GPT-Neo with its EOS embedding scaled up (as in test_beam.py), so
that hypotheses end at EOS often enough for length_penalty and early_stopping to matter; its
fp32 decode graph is written by export's own functions. Where the engine and PyTorch disagree,
the two best scores must be within 1e-4 (a near-tie that ~1e-6 logit differences flip).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from generation import Engine, SamplingParams
from generation.beams import place_children
from generation.loop import Loop
from tests.generation.conftest import PROMPTS

MAX_NEW = 12
MODES = [False, True, "never"]


def token_prompts(vocab: int, n: int = 10) -> list[list[int]]:
    """n prompts of 3..21 ids (longer than the tiny model's window of 8), no EOS (id 0)."""
    return [np.random.default_rng(seed).integers(1, vocab, size=3 + 2 * seed).tolist()
            for seed in range(n)]


@pytest.fixture(scope="module")
def eos_pair(tmp_path_factory, tiny_model_dir):
    """(engine on the fp32 decode graph, the PyTorch model) of the EOS-boosted tiny GPT-Neo."""
    from transformers import GPTNeoForCausalLM

    from export.decode.checkpoint import read_checkpoint
    from export.decode.files import decode_manifest, write_decode_graphs, write_manifest

    model = GPTNeoForCausalLM.from_pretrained(tiny_model_dir).eval()
    with torch.no_grad():
        model.transformer.wte.weight[model.config.eos_token_id] *= 1.5  # tied lm_head too
    out = tmp_path_factory.mktemp("eos_model")
    model.save_pretrained(out)
    for item in tiny_model_dir.iterdir():
        if item.is_file() and not (out / item.name).exists():
            shutil.copy(item, out / item.name)
    config, weights = read_checkpoint(out)
    files = write_decode_graphs(config, weights, out, (), {}, False)
    write_manifest(out, decode_manifest(config, files, "fp32", None, {}, False))
    return Engine.load(out, precision="fp32", provider="cpu"), model


def beam(n: int, lp: float = 1.0, es=False) -> SamplingParams:
    return SamplingParams(num_beams=n, length_penalty=lp, early_stopping=es)


def run(engine: Engine, ids, params, max_new: int = MAX_NEW, **kw):
    return list(engine.stream_tokens(ids, params, max_new, **kw))[-1].rows


def theirs(model, ids, n, lp, es, max_new: int = MAX_NEW):
    eos = model.config.eos_token_id
    input_ids = torch.tensor([ids])
    with torch.no_grad():
        out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), do_sample=False,
                             num_beams=n, max_new_tokens=max_new, length_penalty=lp,
                             early_stopping=es, eos_token_id=eos, pad_token_id=eos,
                             output_scores=True, return_dict_in_generate=True)
    return out.sequences[0, len(ids):].tolist(), float(out.sequences_scores[0])


def check_parity(engine, model, ids, n, lp, es, max_new=MAX_NEW) -> bool:
    """Assert the engine's best hypothesis is transformers'; True when equal token for token."""
    (row,) = run(engine, ids, [beam(n, lp, es)], max_new)
    best = row.hypotheses[0]
    tokens, score = theirs(model, ids, n, lp, es, max_new)
    eos = model.config.eos_token_id
    assert row.finished and row.token_ids == list(best.token_ids) and row.text == best.text
    assert len(row.hypotheses) == n
    same = (list(best.token_ids) == tokens[:len(best.token_ids)]
            and all(t == eos for t in tokens[len(best.token_ids):]))
    assert best.score == pytest.approx(score, abs=1e-4), (ids, best, tokens)
    return same


@pytest.mark.slow
@pytest.mark.parametrize("early_stopping", MODES)
@pytest.mark.parametrize("length_penalty", [0.0, 1.0, 2.0])
@pytest.mark.parametrize("num_beams", [2, 4])
def test_best_beam_equals_transformers(eos_pair, num_beams, length_penalty, early_stopping):
    engine, model = eos_pair
    same = [check_parity(engine, model, ids, num_beams, length_penalty, early_stopping)
            for ids in token_prompts(engine.vocab_size)]
    assert sum(same) >= len(same) - 1  # at most one near-tie flip per setting


def test_the_knobs_change_the_engine_result(eos_pair):
    engine, _ = eos_pair
    prompts = token_prompts(engine.vocab_size)
    def best(ids, **kw):
        return tuple(run(engine, ids, [beam(2, **kw)])[0].token_ids)
    assert any(len({best(ids, es=es) for es in MODES}) > 1 for ids in prompts)
    assert any(len({best(ids, lp=lp) for lp in (0.0, 1.0, 2.0)}) > 1 for ids in prompts)
    greedy = [tuple(run(engine, ids, [SamplingParams()])[0].token_ids) for ids in prompts]
    assert any(best(ids) != g for ids, g in zip(prompts, greedy, strict=True))
    ends = [best(ids)[-1] == engine.eos_ids[0] for ids in prompts]
    assert any(ends) and not all(ends)


@pytest.mark.parametrize("num_beams", [2, 4])
def test_the_fixture_engine_beams_equal_transformers(engine, hf_model, num_beams):
    for prompt in PROMPTS:
        check_parity(engine, hf_model, engine.encode(prompt), num_beams, 1.0, False, 16)


def test_a_beam_column_equals_its_solo_run_beside_others_joining_mid_flight(eos_pair):
    engine, _ = eos_pair
    prompts = token_prompts(engine.vocab_size, 6)
    cases = [(prompts[i], params, 8 + i) for i, params in enumerate([
        [beam(4), SamplingParams(), SamplingParams(temperature=0.9, seed=3)],
        [SamplingParams(temperature=1.1, top_k=20, seed=1)],
        [beam(2, 2.0, "never"), beam(3, 0.0, True)],
        [SamplingParams(repetition_penalty=1.3), beam(2)],
        [beam(4, 1.0, True)],
        [SamplingParams(temperature=0.8, min_p=0.1, seed=2), SamplingParams()],
    ])]
    loop = Loop(engine, max_rows=24)
    try:
        handles, iters = [], []
        for ids, params, n in cases:
            handles.append(loop.submit(None, params, n, ids, candidates=3))
            iters.append(iter(handles[-1]))
            for it in iters:
                next(it, None)
        for it in iters:
            for _ in it:
                pass
        assert loop.stats()["rows_peak"] > 8
        for (ids, params, n), handle in zip(cases, handles, strict=True):
            alone = run(engine, ids, params, n, candidates=3)
            for got, want in zip(handle.rows, alone, strict=True):
                assert (got.token_ids, got.text, got.finish_reason) == (want.token_ids, want.text, want.finish_reason)
                assert got.hypotheses == want.hypotheses and got.candidates == want.candidates
                assert got.pieces == want.pieces
        assert loop.stats()["rows"] == 0 and loop.executor.timing["reorder_copies"] > 0
    finally:
        loop.close()


def test_the_optimum_runner_runs_beams_too(optimum_engine, engine):
    ids = engine.encode(PROMPTS[-1])
    assert run(optimum_engine, ids, [beam(3)], 10)[0].token_ids == run(engine, ids, [beam(3)], 10)[0].token_ids


def test_the_stream_shows_the_best_running_beam_and_says_when_it_was_replaced(eos_pair):
    engine, _ = eos_pair
    replaced = 0
    for ids in token_prompts(engine.vocab_size):
        shown = ""
        for update in engine.stream_tokens(ids, [beam(4), SamplingParams()], MAX_NEW):
            assert update.replaced[1] is False
            shown = update.deltas[0] if update.replaced[0] else shown + update.deltas[0]
            replaced += update.replaced[0]
            row = update.rows[0]
            assert shown == row.text == "".join(p for p, _ in row.pieces)
        assert row.hypotheses[0].text == row.text
    assert replaced  # the best beam did change on some prompt


def test_a_beam_row_counts_num_beams_rows(engine):
    loop = Loop(engine, max_rows=4, threaded=False)
    with pytest.raises(ValueError, match="at most 4 rows"):
        loop.submit("We propose", [beam(3), SamplingParams(), SamplingParams()], 4)
    loop.submit("We propose", [beam(3), SamplingParams()], 4)


@pytest.mark.parametrize(("params", "message"), [
    (dict(num_beams=2, temperature=0.7), "temperature must stay 0 with num_beams > 1"),
    (dict(num_beams=2, top_k=5), "top_k must stay 0"),
    (dict(num_beams=2, top_p=0.9), "top_p must stay 1"),
    (dict(num_beams=2, min_p=0.1), "min_p must stay 0"),
    (dict(num_beams=2, repetition_penalty=1.2), "repetition_penalty must stay 1"),
    (dict(num_beams=0), "num_beams must be an integer in [1, 64]"),
    (dict(num_beams=2.0), "num_beams must be an integer"),
    (dict(early_stopping=1), "early_stopping must be one of False, True, 'never'"),
    (dict(early_stopping="always"), "early_stopping must be one of"),
    (dict(length_penalty=float("nan")), "length_penalty must be a number"),
])
def test_bad_beam_settings_are_refused_with_one_line_each(engine, params, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")) as err:
        engine.generate("We propose", [SamplingParams(**params)], 4)
    assert len(str(err.value).splitlines()) == 1


@pytest.mark.parametrize("parents", [[0, 0, 0, 0], [1, 0], [2, 2, 0, 1], [3, 3, 1, 1], [0, 1, 2]])
def test_children_take_their_parents_slots_with_the_fewest_copies(parents):
    homes, copies = place_children(parents)
    assert sorted(homes) == list(range(len(parents)))  # every position holds one new beam
    assert len(copies) == len(parents) - len(set(parents))
    sources, targets = {s for s, _ in copies}, {d for _, d in copies}
    assert not sources & targets  # no copy reads what another overwrites
    held = list(range(len(parents)))  # position -> old beam held there
    for src, dst in copies:
        held[dst] = held[src]
    assert [held[h] for h in homes] == parents  # new beam i sits on a copy of its parent
