"""The hand-built decode graph against PyTorch, and a row's logits against the same row alone."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from export.decode.checkpoint import DecodeConfig, check_weights, load_weights
from export.decode.graph import build_decode_graph
from export.gate.reference import torch_logits
from generation.runners.decode_graph import DecodeRunner


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    """(config, weights, PyTorch model) of the tiny fixture model."""
    from export.gate.reference import load_reference

    config, weights = DecodeConfig.from_dir(tiny_model_dir), load_weights(tiny_model_dir)
    check_weights(config, weights)
    return config, weights, load_reference(tiny_model_dir)[0]


@pytest.fixture(scope="module")
def sessions(tiny):
    config, weights, _ = tiny
    return {p: ort.InferenceSession(build_decode_graph(config, weights, p, block_size=16)
                                    .SerializeToString(), providers=["CPUExecutionProvider"])
            for p in ("fp32", "int8", "int4")}


def runner(sessions, tiny, precision="fp32", rows=4, capacity=64):
    """The engine's runner on one of the graphs, and a cache of `rows` slots."""
    run = DecodeRunner(sessions[precision])
    return run, run.new_cache(rows, capacity)


def keep_logits(sessions, tiny, ids, keep: int) -> np.ndarray:
    """The last `keep` positions' logits of a prompt prefilled into a fresh cache."""
    run, cache = runner(sessions, tiny)
    return run.prefill(cache, 0, ids, keep=keep)


def prompt(n: int, seed: int, vocab: int) -> list[int]:
    return np.random.default_rng(seed).integers(0, vocab, n).tolist()


def test_fp32_matches_pytorch_beyond_the_window_on_prefill_and_cached_steps(tiny, sessions):
    config, _, model = tiny
    ids = prompt(30, 0, config.vocab_size)
    assert len(ids) - 10 > config.windows[1] > 0  # local layer: prompt far beyond its window
    run, cache = runner(sessions, tiny)
    logits = run.prefill(cache, 0, ids[:20], keep=20)
    assert np.abs(logits - torch_logits(model, [ids[:20]])[0]).max() <= 1e-4
    for t in range(20, 30):
        step = run.step(cache, np.asarray([ids[t]]))[0]
        assert np.abs(step - torch_logits(model, [ids[: t + 1]])[0][-1]).max() <= 1e-4, t


def test_logits_to_keep_returns_the_last_positions(tiny, sessions):
    ids = prompt(12, 1, tiny[0].vocab_size)
    full, last, three = (keep_logits(sessions, tiny, ids, keep)[None] for keep in (12, 1, 3))
    assert full.shape[:2] == (1, 12) and last.shape[:2] == (1, 1) and three.shape[:2] == (1, 3)
    np.testing.assert_allclose(three[0], full[0, -3:], atol=1e-6)
    np.testing.assert_allclose(last[0, 0], full[0, -1], atol=1e-6)


def test_cache_is_updated_in_place_in_each_rows_slot(tiny, sessions):
    run, slots = runner(sessions, tiny, rows=3)
    run.prefill(slots, 1, prompt(7, 2, tiny[0].vocab_size))
    for cache in slots.arrays:
        assert not cache[0].any() and not cache[2].any()  # other slots untouched
        assert np.abs(cache[1, :, :7]).min() > 0 and not cache[1, :, 7:].any()


def test_rows_of_different_lengths_in_one_batch_match_pytorch(tiny, sessions):
    config, _, model = tiny
    rows = [prompt(n, 10 + n, config.vocab_size) for n in (23, 5, 11)]
    run, cache = runner(sessions, tiny, rows=3)
    for slot, ids in enumerate(rows):
        run.prefill(cache, slot, ids)
    for step in range(4):
        nxt = [[(7 * step + slot) % config.vocab_size] for slot in range(3)]
        logits = run.step(cache, np.asarray([t for (t,) in nxt]))[:, None]
        for slot in range(3):
            rows[slot] = rows[slot] + nxt[slot]
            ref = torch_logits(model, [rows[slot]])[0][-1]
            assert np.abs(logits[slot, -1] - ref).max() <= 1e-4, (step, slot)


@pytest.mark.parametrize("precision", ["fp32", "int8", "int4"])
def test_a_row_is_bitwise_the_same_alone_or_beside_rows_of_other_lengths(tiny, sessions, precision):
    vocab = tiny[0].vocab_size
    (alone, one), (batch, three) = (runner(sessions, tiny, precision, rows) for rows in (1, 3))
    ids = prompt(14, 3, vocab)
    alone.prefill(one, 0, ids)
    for slot, n in ((0, 14), (1, 3), (2, 20)):
        batch.prefill(three, slot, ids if slot == 0 else prompt(n, slot, vocab))
    for step in range(6):
        token = (5 * step + 1) % vocab
        solo = alone.step(one, np.asarray([token]))[:1]
        together = batch.step(three, np.asarray([token, step % vocab, (step + 9) % vocab]))[0]
        assert np.array_equal(solo, together[None]), (precision, step)


def test_window_cache_holds_only_the_window_and_matches_pytorch_and_itself_alone(tiny):
    config, weights, model = tiny
    session = ort.InferenceSession(build_decode_graph(config, weights, window_cache=True)
                                   .SerializeToString(), providers=["CPUExecutionProvider"])
    run = DecodeRunner(session)
    batch, alone = (run.new_cache(n, 64) for n in (3, 1))
    keys = batch.arrays[0::2]  # layer 0 key, layer 1 key, ...
    assert keys[1].shape[2] == config.windows[1] and keys[0].shape[2] == 64
    rows = [prompt(n, 20 + n, config.vocab_size) for n in (23, 5, 11)]
    for slot, ids in enumerate(rows):
        logits = run.prefill(batch, slot, ids, keep=len(ids))
        assert np.abs(logits - torch_logits(model, [ids])[0]).max() <= 1e-4
    run.prefill(alone, 0, rows[1])
    for step in range(12):  # the 5-token row goes past the window too
        nxt = [[(3 * step + slot) % config.vocab_size] for slot in range(3)]
        logits = run.step(batch, np.asarray([t for (t,) in nxt])).copy()[:, None]
        assert np.array_equal(run.step(alone, np.asarray(nxt[1]))[:1], logits[1]), step
        for slot in range(3):
            rows[slot] = rows[slot] + nxt[slot]
            assert np.abs(logits[slot, -1] - torch_logits(model, [rows[slot]])[0][-1]).max() <= 1e-4
