"""The hand-built decode graph against PyTorch, and a row's logits against the same row alone."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from export.decode_config import DecodeConfig, check_weights, load_weights
from export.decode_graph import build_decode_graph
from export.decode_io import DecodeRunner


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    """(config, weights, PyTorch model) of the tiny fixture model."""
    from export.pipeline import load_reference

    config, weights = DecodeConfig.from_dir(tiny_model_dir), load_weights(tiny_model_dir)
    check_weights(config, weights)
    return config, weights, load_reference(tiny_model_dir)[0]


@pytest.fixture(scope="module")
def sessions(tiny):
    config, weights, _ = tiny
    return {p: ort.InferenceSession(build_decode_graph(config, weights, p, block_size=16)
                                    .SerializeToString(), providers=["CPUExecutionProvider"])
            for p in ("fp32", "int8", "int4")}


def runner(sessions, tiny, precision="fp32", rows=4, capacity=64) -> DecodeRunner:
    config = tiny[0]
    return DecodeRunner(sessions[precision], config.layers, config.heads, config.head_dim,
                        rows, capacity)


def torch_last(model, ids) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.tensor([list(ids)])).logits[0].numpy()


def prompt(n: int, seed: int, vocab: int) -> list[int]:
    return np.random.default_rng(seed).integers(0, vocab, n).tolist()


def test_fp32_matches_pytorch_beyond_the_window_on_prefill_and_cached_steps(tiny, sessions):
    config, _, model = tiny
    ids = prompt(30, 0, config.vocab_size)
    assert len(ids) - 10 > config.windows[1] > 0  # local layer: prompt far beyond its window
    run = runner(sessions, tiny)
    logits = run.run([ids[:20]], logits_to_keep=20)[0]
    assert np.abs(logits - torch_last(model, ids[:20])).max() <= 1e-4
    for t in range(20, 30):
        step = run.run([[ids[t]]])[0, -1]
        assert np.abs(step - torch_last(model, ids[: t + 1])[-1]).max() <= 1e-4, t


def test_logits_to_keep_returns_the_last_positions(tiny, sessions):
    ids = prompt(12, 1, tiny[0].vocab_size)
    full = runner(sessions, tiny).run([ids], logits_to_keep=12)
    last = runner(sessions, tiny).run([ids], logits_to_keep=1)
    three = runner(sessions, tiny).run([ids], logits_to_keep=3)
    assert full.shape[:2] == (1, 12) and last.shape[:2] == (1, 1) and three.shape[:2] == (1, 3)
    np.testing.assert_allclose(three[0], full[0, -3:], atol=1e-6)
    np.testing.assert_allclose(last[0, 0], full[0, -1], atol=1e-6)


def test_cache_is_updated_in_place_in_each_rows_slot(tiny, sessions):
    run = runner(sessions, tiny, rows=3)
    run.run([prompt(7, 2, tiny[0].vocab_size)], first=1)
    for cache in run.keys + run.values:
        assert not cache[0].any() and not cache[2].any()  # other slots untouched
        assert np.abs(cache[1, :, :7]).min() > 0 and not cache[1, :, 7:].any()


def test_rows_of_different_lengths_in_one_batch_match_pytorch(tiny, sessions):
    config, _, model = tiny
    rows = [prompt(n, 10 + n, config.vocab_size) for n in (23, 5, 11)]
    run = runner(sessions, tiny)
    for slot, ids in enumerate(rows):
        run.run([ids], first=slot)
    for step in range(4):
        nxt = [[(7 * step + slot) % config.vocab_size] for slot in range(3)]
        logits = run.run(nxt)
        for slot in range(3):
            rows[slot] = rows[slot] + nxt[slot]
            ref = torch_last(model, rows[slot])[-1]
            assert np.abs(logits[slot, -1] - ref).max() <= 1e-4, (step, slot)


@pytest.mark.parametrize("precision", ["fp32", "int8", "int4"])
def test_a_row_is_bitwise_the_same_alone_or_beside_rows_of_other_lengths(tiny, sessions, precision):
    vocab = tiny[0].vocab_size
    alone, batch = runner(sessions, tiny, precision), runner(sessions, tiny, precision)
    ids = prompt(14, 3, vocab)
    alone.run([ids])
    for slot, n in ((0, 14), (1, 3), (2, 20)):
        batch.run([ids if slot == 0 else prompt(n, slot, vocab)], first=slot)
    for step in range(6):
        token = [(5 * step + 1) % vocab]
        solo = alone.run([token])[0]
        together = batch.run([token, [step % vocab], [(step + 9) % vocab]])[0]
        assert np.array_equal(solo, together), (precision, step)
