"""The start-up probe that decides whether a quantized decode graph pads a lone row."""

from __future__ import annotations

import numpy as np
import pytest

from generation import Engine
from generation.runners.pad_probe import PROBE_ENV, probe_single_row
from tests.generation.test_invariance import DEMO_MODEL


@pytest.mark.parametrize("precision", ["int8", "int4"])
def test_the_probe_result_and_the_rows_fed_are_in_engine_info(decode_dir, precision):
    engine = Engine.load(decode_dir, precision=precision, provider="cpu")
    probe = engine.info["single_row_probe"]
    assert probe in (True, False)
    assert engine.info["min_rows"] == (1 if probe else 2) == int(engine.runner.min_rows[0])


def test_a_lone_row_that_rounds_differently_keeps_the_padding(decode_dir, monkeypatch):
    engine = Engine.load(decode_dir, precision="int4", provider="cpu")
    runner, real = engine.runner, engine.runner.step

    def skewed(cache, tokens):  # what a single-row kernel with other rounding would return
        logits = real(cache, tokens)
        if len(tokens) == 1 and runner.min_rows[0] == 1:
            logits[0, 0] = np.nextafter(logits[0, 0], np.float32(np.inf))
        return logits

    monkeypatch.setattr(runner, "step", skewed)
    assert probe_single_row(runner) is False and runner.min_rows[0] == 2


def test_the_probe_can_be_switched_off(decode_dir, monkeypatch):
    monkeypatch.setenv(PROBE_ENV, "0")
    engine = Engine.load(decode_dir, precision="int4", provider="cpu")
    assert engine.info["single_row_probe"] is None and int(engine.runner.min_rows[0]) == 2


def test_graphs_without_padding_have_nothing_to_probe(decode_dir):
    engine = Engine.load(decode_dir, precision="fp32", provider="cpu")
    assert engine.info["single_row_probe"] is None and engine.info["min_rows"] is None


def test_an_older_padded_graph_without_the_min_rows_input_still_pads():
    if not (DEMO_MODEL / "decode.json").is_file():
        pytest.skip("demo_model/ is absent")
    engine = Engine.load(DEMO_MODEL, provider="cpu")
    assert engine.runner.min_rows is None and engine.info["single_row_probe"] is None
