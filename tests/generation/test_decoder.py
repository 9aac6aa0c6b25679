"""The decode graph's runner: chunked prefill, slots of different lengths, copy/move, errors;
on graphs with growing caches and on window-cache graphs (the local layer keeps its last 8)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from export.gate.reference import torch_logits
from generation import Engine
from tests.conftest import TINY_WINDOW
from tests.generation.conftest import DECODE_PRECISIONS, PROMPTS

LAYOUTS = ("decode_dir", "window_dir")  # growing caches; window caches
ENGINES = ("engine", "window_engine")


@pytest.fixture(scope="module")
def runners(request) -> dict:
    """{(layout, precision): runner}"""
    return {(d, p): Engine.load(request.getfixturevalue(d), precision=p, provider="cpu").runner
            for d in LAYOUTS for p in DECODE_PRECISIONS}


def greedy_tokens(runner, cache, slots: list[int], first: np.ndarray, n: int) -> np.ndarray:
    """n greedy steps of slots 0..len(slots)-1 from their first tokens: [n + 1, rows]."""
    tokens = [first]
    for _ in range(n):
        tokens.append(runner.step(cache, tokens[-1]).argmax(-1))
    return np.array(tokens)


def test_every_batch_size_writes_into_one_logits_buffer(runners):
    """The serving loop's batch size changes as requests come and go: steps at every size from 1
    to the cache's rows hold one [rows, vocab] logits buffer, not one per size (which would
    grow to rows * (rows + 1) / 2 rows of logits: 235 MiB for 49 slots of GPT-Neo's vocab)."""
    runner = runners["decode_dir", DECODE_PRECISIONS[0]]
    rows, row_bytes = 16, runner.io.vocab_size * 4
    cache = runner.new_cache(rows, 64)
    for slot in range(rows):
        runner.prefill(cache, slot, [5, 9, 17])
    tracemalloc.start()  # numpy reports its buffers to tracemalloc
    try:
        for batch in range(1, rows + 1):
            runner.step(cache, np.full(batch, 7))
        held = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    # Blocks of a row of logits or more: the logits buffers (the other inputs are a few bytes a row).
    logits_bytes = sum(t.size for t in held.traces if t.size >= row_bytes)
    assert logits_bytes <= rows * row_bytes, (logits_bytes / row_bytes, rows)


@pytest.mark.parametrize("which", ENGINES)
def test_prefill_in_chunks_on_top_of_a_slot_matches_pytorch(which, request, hf_model):
    """A split prefill (what a scheduler does with long prompts) equals the whole prompt, also
    where a chunk crosses the window or lands on a slot already past it; so do the steps after."""
    engine = request.getfixturevalue(which)
    runner = engine.runner
    ids = engine.encode(PROMPTS[3])
    assert len(ids) > 12  # beyond the window of 8
    cache = runner.new_cache(2, 64)
    runner.prefill(cache, 1, ids[:3])
    middle = runner.prefill(cache, 1, ids[3:10], keep=7)
    last = runner.prefill(cache, 1, ids[10:], keep=2)
    assert cache.lengths.tolist() == [0, len(ids)]
    ref = torch_logits(hf_model, [ids + ids[:12]])[0]
    np.testing.assert_allclose(middle, ref[3:10], atol=1e-4)
    np.testing.assert_allclose(last, ref[len(ids) - 2:len(ids)], atol=1e-4)
    cache.copy(1, 0)
    steps = [runner.step(cache, np.array([t, t]))[0].copy() for t in ids[:12]]
    np.testing.assert_allclose(steps, ref[len(ids):], atol=1e-4)
    windowed = which == "window_engine"  # the local layer (1) holds its window, not the slot
    assert [a.shape[2] for a in cache.arrays] == [64, 64] + [TINY_WINDOW if windowed else 64] * 2


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("precision", DECODE_PRECISIONS)
def test_two_prompts_in_one_batch_each_equal_their_solo_run(runners, layout, precision):
    """Slots of different lengths step together; each slot's logits are bitwise its solo ones."""
    runner = runners[layout, precision]
    prompts = [[5, 9, 17, 3, 60, 2, 7, 7, 11, 42, 8, 1, 99], [31, 4]]  # 13 and 2 tokens
    solo = []
    for ids in prompts:
        cache = runner.new_cache(1, 64)
        first = runner.prefill(cache, 0, ids).argmax(-1)
        logits = [runner.step(cache, first).copy()]
        solo.append((first, logits))
    cache = runner.new_cache(2, 64)
    firsts = np.concatenate([runner.prefill(cache, s, ids).argmax(-1) for s, ids in enumerate(prompts)])
    batched = runner.step(cache, firsts)
    assert cache.lengths.tolist() == [14, 3]
    for slot, (first, logits) in enumerate(solo):
        assert firsts[slot] == first[0]
        assert np.array_equal(batched[slot], logits[0][0])
    # 40 more greedy steps side by side equal 40 solo steps of each prompt.
    together = greedy_tokens(runner, cache, [0, 1], batched.argmax(-1), 40)
    for slot, ids in enumerate(prompts):
        alone = runner.new_cache(1, 64)
        runner.prefill(alone, 0, ids)
        runner.step(alone, firsts[slot:slot + 1])
        assert greedy_tokens(runner, alone, [0], together[0, slot:slot + 1], 40)[:, 0].tolist() \
            == together[:, slot].tolist()


@pytest.mark.parametrize("which", ENGINES)
def test_copy_and_move_carry_a_slot(which, request):
    """copy broadcasts a prompt; move of the last slot into a freed one continues it unchanged
    (both slots past the window: a window cache is copied whole)."""
    engine = request.getfixturevalue(which)
    runner = engine.runner
    ids, other = engine.encode(PROMPTS[1]), engine.encode(PROMPTS[2])
    assert min(len(ids), len(other)) > TINY_WINDOW
    cache = runner.new_cache(3, 64)
    first = runner.prefill(cache, 0, ids).argmax(-1)
    cache.copy(0, 1)
    runner.prefill(cache, 2, other)
    three = runner.step(cache, np.array([first[0], first[0], 5])).copy()
    assert np.array_equal(three[0], three[1])
    cache.move(2, 0)  # slot 0 finished: slot 2 takes its place
    assert cache.lengths.tolist() == [len(other) + 1, len(ids) + 1, 0]
    ref = runner.new_cache(1, 64)
    runner.prefill(ref, 0, other)
    runner.step(ref, np.array([5]))
    for t in range(3):
        moved = runner.step(cache, np.array([7 + t, 8])).copy()
        assert np.array_equal(moved[0], runner.step(ref, np.array([7 + t]))[0])
    cache.clear(1)
    assert cache.lengths.tolist() == [cache.lengths[0], 0, 0]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("precision", DECODE_PRECISIONS)
def test_a_reused_slot_ignores_what_its_last_occupant_left(runners, layout, precision):
    """A cleared slot keeps the old keys/values past its new length; they must not leak."""
    runner = runners[layout, precision]
    short, long = [3, 14, 15], list(range(40, 70))
    used = runner.new_cache(2, 64)
    runner.prefill(used, 0, [9, 9])
    runner.prefill(used, 1, long)
    runner.step(used, np.array([1, 2]))
    used.clear(1)
    runner.prefill(used, 1, short)
    fresh = runner.new_cache(2, 64)
    runner.prefill(fresh, 0, [9, 9])
    runner.step(fresh, np.array([1]))
    runner.prefill(fresh, 1, short)
    for _ in range(3):
        assert np.array_equal(runner.step(used, np.array([4, 5])), runner.step(fresh, np.array([4, 5])))


def test_step_reuses_its_buffers(engine):
    """No per-step allocation: the logits of every step land in the same buffer."""
    runner = engine.runner
    cache = runner.new_cache(2, 16)
    runner.prefill(cache, 0, [1, 2])
    cache.copy(0, 1)
    a = runner.step(cache, np.array([3, 4]))
    b = runner.step(cache, np.array([5, 6]))
    assert np.shares_memory(a, b)


def test_misuse_is_a_clear_error(engine, optimum_engine):
    runner = engine.runner
    cache = runner.new_cache(2, 8)
    with pytest.raises(ValueError, match="outside the cache's 2 rows"):
        runner.prefill(cache, 2, [1])
    with pytest.raises(ValueError, match="the cache holds 8"):
        runner.prefill(cache, 0, list(range(9)))
    runner.prefill(cache, 0, [1, 2, 3])
    with pytest.raises(ValueError, match="prefilled first"):
        runner.step(cache, np.array([1, 2]))
    with pytest.raises(ValueError, match="outside the cache's 2 rows"):
        runner.step(cache, np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="keep must be in"):
        runner.prefill(cache, 1, [1], keep=2)
    legacy = optimum_engine.runner
    cache = legacy.new_cache(2, 8)
    legacy.prefill(cache, 0, [1, 2])
    with pytest.raises(ValueError, match="export a decode graph"):
        legacy.prefill(cache, 1, [1, 2])
