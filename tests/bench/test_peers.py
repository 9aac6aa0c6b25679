"""bench/peers.py: the other engines' rows skip with the setup command where they are absent."""

from __future__ import annotations

import importlib.util
import json

import pytest

from bench import decode, peers


@pytest.mark.skipif(importlib.util.find_spec("ctranslate2") is not None
                    or importlib.util.find_spec("llama_cpp") is not None,
                    reason="the peers are installed in this environment")
def test_peer_rows_are_skipped_with_the_setup_command(exported, tiny_model_dir, tmp_path):
    out = tmp_path / "d.json"
    names = ["ctranslate2 int8", "llama.cpp Q4_0", "llama.cpp Q8_0"]
    assert decode.main(["--model", str(tiny_model_dir), "--onnx-dir", str(exported[1]), "--backends",
                        *names, "--new-tokens", "3", "--prompt-tokens", "8", "--batch", "1",
                        "--no-floor", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["rows"] == []
    assert set(result["skipped"]) == set(names)
    assert all("python bench/peers.py setup" in why for why in result["skipped"].values())


def test_peer_cases_outside_their_reach_are_skipped():
    with pytest.raises(decode.Skip, match="batch 1"):
        peers._case_fits(decode.BenchCase([[1, 2], [3, 4]], 4))
    with pytest.raises(decode.Skip, match="1,024 tokens"):
        peers._case_fits(decode.BenchCase([[1] * 1000], 128))
    peers._case_fits(decode.BenchCase([[1] * 200], 128))
