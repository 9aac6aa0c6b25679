"""bench/prefill.py, bench/profile_step.py and bench/sampler.py run end to end on the tiny export (no timing
asserts)."""

from __future__ import annotations

import json

import pytest

from bench import prefill, profile_step


def test_options_parse_and_bad_ones_are_refused():
    assert prefill.parse_option("int4@64") == ("int4", 64)
    assert prefill.parse_option("int8-dynamic@all") == ("int8-dynamic", None)
    assert prefill.parse_option("optimum-int8") == ("optimum-int8", None)
    for bad in ("int2@64", "int4@0", "int4@many"):
        with pytest.raises(ValueError):
            prefill.parse_option(bad)


def test_prefill_bench_times_every_option(exported, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "prefill.json"
    options = ["int4@8", "int4-fp32@all", "int8-dynamic@8", "fp32@all", "optimum-int8@all"]
    code = prefill.main(["--model-dir", str(tiny_model_dir), "--onnx-dir", str(exported[1]),
                         "--prompt-tokens", "20", "--rounds", "1", "--options", *options,
                         "--json", str(out)])
    assert code == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["option"] for r in rows] == options and all(r["ttft_ms"] > 0 for r in rows)
    assert "| int8-dynamic@8 |" in capsys.readouterr().out


def test_a_bad_option_is_one_line_and_exit_2(capsys):
    assert prefill.main(["--options", "int3@4"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_profile_step_prints_the_op_table(exported, tmp_path, capsys):
    out = tmp_path / "profile.json"
    code = profile_step.main(["--onnx-dir", str(exported[1]), "--precision", "int4", "--steps", "3",
                              "--batch", "2", "--min-rows", "1", "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["min_rows"] == 1 and result["ops"][0]["share"] > 0
    assert "MatMulNBits" in {r["op"] for r in result["ops"]}
    assert "| MatMulNBits |" in capsys.readouterr().out


def test_sampler_bench_times_forward_and_sampler(exported, tmp_path, capsys):
    from bench import sampler

    out = tmp_path / "sampler.json"
    code = sampler.main(["--model-dir", str(exported[1]), "--rows", "6", "--steps", "2",
                         "--prompt-tokens", "5", "--mix", "demo", "topk", "--candidates", "3",
                         "--json", str(out)])
    assert code == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["mix"] for r in rows] == ["demo", "topk"]
    assert all(r["forward_ms"] > 0 and r["sampler_ms"] > 0 for r in rows)
    assert "demo" in capsys.readouterr().out
