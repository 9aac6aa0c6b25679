"""The decoding loop (scheduler + executor) against the real runners of the tiny model: requests
that share the loop (and join it mid-flight) get exactly the tokens they get alone; cancel,
busy, errors, time cap."""

from __future__ import annotations

import time

import numpy as np
import pytest

from generation import Engine, SamplingParams, scheduler
from generation.loop import Busy, Loop
from tests.generation.conftest import PROMPTS
from tests.helpers import wait_for

STRATEGIES = [
    [SamplingParams(), SamplingParams(temperature=0.8, seed=1),
     SamplingParams(temperature=0.9, top_k=20, top_p=0.9, seed=1)],
    [SamplingParams(temperature=1.2, min_p=0.05, seed=4)],
    [SamplingParams(repetition_penalty=1.3), SamplingParams(temperature=0.7, top_p=0.8, seed=9)],
]


def solo(engine: Engine, prompt: str, params, n: int) -> list[list[int]]:
    return [r.token_ids for r in engine.generate(prompt, params, n)]


def drain(handle) -> list[list[int]]:
    for _ in handle:
        pass
    return [r.token_ids for r in handle.rows]


@pytest.fixture
def make(engine):
    made = []

    def build(eng: Engine = engine, **budgets) -> Loop:
        made.append(Loop(eng, **budgets))
        return made[-1]

    yield build
    for loop in made:
        loop.close()


def short_chunks(monkeypatch, tokens: int) -> None:
    """Prompts cut into chunks of `tokens` (everywhere, solo runs too), `tokens` a step."""
    monkeypatch.setattr(scheduler, "PREFILL_CHUNK", tokens)
    monkeypatch.setattr(scheduler, "PREFILL_GRAPH_CHUNK", tokens)


@pytest.mark.parametrize("precision", ["fp32", "int4"])
def test_requests_joining_mid_flight_get_their_solo_tokens(decode_dir, make, precision, monkeypatch):
    engine = Engine.load(decode_dir, precision=precision, provider="cpu")
    # A prefill chunk shorter than the long prompt, so its prompt is fed over several steps.
    short_chunks(monkeypatch, 8)
    loop = make(engine)
    assert engine.runner.ragged
    cases = [(PROMPTS[i % len(PROMPTS)], STRATEGIES[i % len(STRATEGIES)], 12 + 7 * i) for i in range(8)]
    handles, iters = [], []
    for prompt, params, n in cases:
        handles.append(loop.submit(prompt, params, n))
        iters.append(iter(handles[-1]))
        for it in iters:  # everyone already running advances a step or two before the next joins
            next(it, None)
    for it in iters:
        for _ in it:
            pass
    assert loop.stats()["rows_peak"] > 3  # requests really shared steps
    for (prompt, params, n), handle in zip(cases, handles, strict=True):
        assert [r.token_ids for r in handle.rows] == solo(engine, prompt, params, n)
        expected = engine.generate(prompt, params, n)
        assert [r.text for r in handle.rows] == [r.text for r in expected]
        assert [r.finish_reason for r in handle.rows] == [r.finish_reason for r in expected]
    assert loop.stats()["rows"] == 0


def test_a_tight_row_budget_juggles_slots_and_keeps_every_result(engine, make, monkeypatch):
    """Few rows, short prefill chunks, requests of 1-3 rows arriving while others prefill and
    decode: prompts parked in slots get moved out of the way of joining rows."""
    short_chunks(monkeypatch, 3)
    loop = make(max_rows=5)
    rng = np.random.default_rng(0)
    cases = [(PROMPTS[int(rng.integers(4))], STRATEGIES[int(rng.integers(3))], int(rng.integers(1, 30)))
             for _ in range(30)]
    handles = []
    for prompt, params, n in cases:
        handles.append(loop.submit(prompt, params, n))
        time.sleep(float(rng.random()) * 0.004)
    for (prompt, params, n), handle in zip(cases, handles, strict=True):
        assert drain(handle) == solo(engine, prompt, params, n)
    assert loop.stats()["rows"] == 0


def test_plain_export_is_served_one_request_at_a_time(optimum_engine, make):
    loop = make(optimum_engine)
    assert not optimum_engine.runner.ragged
    cases = [(PROMPTS[i], STRATEGIES[i % 3], 10 + 3 * i) for i in range(4)]
    handles = [loop.submit(p, params, n) for p, params, n in cases]
    for (prompt, params, n), handle in zip(cases, handles, strict=True):
        assert drain(handle) == solo(optimum_engine, prompt, params, n)


def test_a_cancelled_request_frees_its_rows_within_a_step(engine, make):
    loop = make()
    long = loop.submit(PROMPTS[0], STRATEGIES[0], 200)
    short = loop.submit(PROMPTS[1], STRATEGIES[1], 150)
    stream = iter(long)
    next(stream)
    wait_for(lambda: loop.stats()["rows"] == 4)
    long.read_now()  # every token the loop has sent so far
    decoded = long.rows[0].token_ids
    before = len(decoded)
    stream.close()  # what a dropped client does to the handler's generator
    wait_for(lambda: loop.stats()["rows"] == 1)
    long.read_now()  # and what it sent after
    assert len(decoded) <= before + 2  # it left the batch within a step (or two, racing)
    assert drain(short) == solo(engine, PROMPTS[1], STRATEGIES[1], 150)
    # The cancelled request stopped well short of its 200 tokens.
    assert all(len(r.token_ids) < 200 for r in long.rows)


def test_a_full_queue_is_busy_at_once_and_serving_goes_on(engine, make):
    loop = make(max_rows=3, queue_size=1)
    holder = loop.submit(PROMPTS[0], STRATEGIES[0], 200)
    next(iter(holder))  # admitted: its 3 rows fill the budget
    waiting = loop.submit(PROMPTS[1], STRATEGIES[1], 8)
    start = time.perf_counter()
    with pytest.raises(Busy, match="busy"):
        loop.submit(PROMPTS[2], STRATEGIES[1], 8)
    assert time.perf_counter() - start < 0.5
    holder.cancel()
    assert drain(waiting) == solo(engine, PROMPTS[1], STRATEGIES[1], 8)
    assert drain(loop.submit(PROMPTS[2], STRATEGIES[1], 8)) == solo(engine, PROMPTS[2], STRATEGIES[1], 8)


def test_more_rows_than_the_budget_is_refused(make):
    with pytest.raises(ValueError, match="at most 2 rows"):
        make(max_rows=2).submit(PROMPTS[0], STRATEGIES[0], 4)


@pytest.mark.parametrize("where", ["prefill", "accept"])
def test_an_engine_error_reaches_only_its_request(engine, make, monkeypatch, where):
    from generation.handle import RowBuilder

    loop = make()
    bad_prompt = PROMPTS[2]
    if where == "prefill":
        real = engine.runner.prefill
        bad_ids = engine.encode(bad_prompt)

        def prefill(cache, slot, ids, keep=1):
            if list(ids) == bad_ids[:len(ids)]:
                raise RuntimeError("injected prefill failure")
            return real(cache, slot, ids, keep)

        monkeypatch.setattr(engine.runner, "prefill", prefill)
    else:
        # Taking a row's token: now on the caller's side (detokenization, the row's result).
        accept = RowBuilder.apply

        def failing(self, update):
            if self.params.seed == 666 and len(self.result.token_ids) == 5:
                raise RuntimeError("injected accept failure")
            return accept(self, update)

        monkeypatch.setattr(RowBuilder, "apply", failing)
    bad_params = [SamplingParams(temperature=0.8, seed=666)]
    good = [loop.submit(PROMPTS[i], STRATEGIES[i % 3], 20) for i in (0, 1)]
    bad = loop.submit(bad_prompt, bad_params, 20)
    more = loop.submit(PROMPTS[3], STRATEGIES[0], 20)
    with pytest.raises(RuntimeError, match="injected"):
        drain(bad)
    monkeypatch.undo()
    for i, handle in zip((0, 1), good, strict=True):
        assert drain(handle) == solo(engine, PROMPTS[i], STRATEGIES[i % 3], 20)
    assert drain(more) == solo(engine, PROMPTS[3], STRATEGIES[0], 20)
    assert loop.stats()["rows"] == 0


def test_the_time_cap_ends_a_request_with_a_prefix(engine, make, monkeypatch):
    loop = make(time_limit_s=0.02)
    step = engine.runner.step

    def slow_step(cache, tokens):  # the tiny model can decode everything in 10 ms on an idle box
        time.sleep(0.002)
        return step(cache, tokens)

    monkeypatch.setattr(engine.runner, "step", slow_step)
    n = engine.context_size - 20
    handle = loop.submit(PROMPTS[1], [SamplingParams()], n)
    cut = drain(handle)[0]
    full = solo(engine, PROMPTS[1], [SamplingParams()], n)[0]
    assert len(full) > 100  # at >= 2 ms a step, longer than the 20 ms cap
    assert handle.timed_out
    assert full[:len(cut)] == cut and len(cut) < len(full)


def test_coalesced_updates_carry_every_token(engine, make):
    handle = make().submit(PROMPTS[0], STRATEGIES[0], 40)
    updates = [[d for d in u.deltas] for u in handle.updates(0.02)]
    texts = ["".join(u[i] for u in updates) for i in range(3)]
    assert texts == [r.text for r in engine.generate(PROMPTS[0], STRATEGIES[0], 40)]
