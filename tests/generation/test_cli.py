"""`python -m generation`: streaming, --json, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from generation import SamplingParams
from generation.cli import main
from tests.conftest import REPO_ROOT
from tests.generation.conftest import PROMPTS


def test_json_output_is_the_greedy_row(decode_dir, engine, capsys):
    assert main(["--model", str(decode_dir), "--prompt", PROMPTS[3], "--max-new-tokens", "20",
                 "--json", "--provider", "cpu", "--precision", "fp32"]) == 0
    out = json.loads(capsys.readouterr().out)
    (row,) = engine.generate(PROMPTS[3], [SamplingParams()], 20)
    assert out["text"] == row.text and out["token_ids"] == row.token_ids
    assert out["stats"]["new_tokens"] == len(row.token_ids) == 20
    assert out["stats"]["finish_reason"] == "length" and out["stats"]["prompt_tokens"] > 8


def test_sampling_options_reach_the_engine(decode_dir, engine, capsys):
    args = ["--model", str(decode_dir), "--precision", "fp32", "--prompt", PROMPTS[1], "--max-new-tokens", "24",
            "--temperature", "0.9", "--top-k", "30", "--top-p", "0.95", "--min-p", "0.01",
            "--repetition-penalty", "1.2", "--seed", "4", "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    params = SamplingParams(temperature=0.9, top_k=30, top_p=0.95, min_p=0.01,
                            repetition_penalty=1.2, seed=4)
    assert out["token_ids"] == engine.generate(PROMPTS[1], [params], 24)[0].token_ids


def test_beam_options_reach_the_engine(decode_dir, engine, capsys):
    args = ["--model", str(decode_dir), "--precision", "fp32", "--prompt", PROMPTS[1], "--max-new-tokens", "10",
            "--num-beams", "3", "--length-penalty", "2", "--early-stopping", "never"]
    assert main(args) == 0
    params = SamplingParams(num_beams=3, length_penalty=2.0, early_stopping="never")
    assert capsys.readouterr().out == engine.generate(PROMPTS[1], [params], 10)[0].text + "\n"


def test_streaming_prints_the_continuation(decode_dir, engine):
    # Default max_new_tokens follows generation_config.json (32 in the fixture).
    result = subprocess.run(
        [sys.executable, "-m", "generation", "--model", str(decode_dir), "--precision", "fp32",
         "--prompt", PROMPTS[2]],
        cwd=REPO_ROOT, capture_output=True, text=True, encoding="utf-8", timeout=120)
    assert result.returncode == 0, result.stderr
    (row,) = engine.generate(PROMPTS[2], [SamplingParams()], 32)
    assert result.stdout == row.text + "\n"
    assert "decode_fp32.onnx" in result.stderr  # the resolved config is printed to stderr


@pytest.mark.parametrize("extra, message", [
    (["--top-p", "1.5"], "top_p must be a number in (0, 1]"),
    (["--temperature", "-1"], "temperature must be"),
    (["--max-new-tokens", "0"], "max_new_tokens must be"),
    (["--top-k", "many"], "argument --top-k: invalid int value"),
    (["--precision", "int3"], "argument --precision: invalid choice"),
    (["--precision", "int4"], "no int4 model"),
    (["--top-k", str(10**30)], "top_k must be an integer in [0, 2147483647]"),
    (["--num-beams", "2", "--temperature", "0.5"], "temperature must stay 0 with num_beams > 1"),
    (["--early-stopping", "sometimes"], "argument --early-stopping: must be true, false or never"),
])
def test_bad_options_exit_2_with_one_line(tiny_onnx_dir, capsys, extra, message):
    code = None
    try:
        code = main(["--model", str(tiny_onnx_dir), "--prompt", "Hi", *extra])
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    assert code == 2
    assert message in captured.err
    assert len(captured.err.strip().splitlines()) == 1 and captured.out == ""


def test_missing_model_exits_2(tmp_path, capsys):
    assert main(["--model", str(tmp_path / "nothing" / "here"), "--prompt", "Hi"]) == 2
    assert "neither a model directory nor a Hub repo id" in capsys.readouterr().err


def test_a_prompt_of_invalid_utf8_bytes_exits_2_with_one_line(tiny_onnx_dir):
    result = subprocess.run(
        [sys.executable, "-m", "generation", "--model", str(tiny_onnx_dir), "--prompt",
         b"abc\xff\xfe"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "python -m generation: error: --prompt is not valid UTF-8 (byte 0xff at position 3)"]
