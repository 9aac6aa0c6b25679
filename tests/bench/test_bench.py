"""bench/decode.py runs end to end on tiny models (correctness only: no timing asserts)."""

from __future__ import annotations

import json

import pytest

from bench import _setup, decode

# The rows this issue owns (the engine's rows are tested by the generation tests).
CORE = ("pytorch eager", "optimum fp32", "optimum int8", "optimum int4")


def test_bench_runs_the_reference_backends_on_the_tiny_model(exported, tiny_model_dir, tmp_path, capsys):
    _, onnx_dir = exported
    out = tmp_path / "decode.json"
    code = decode.main(["--model", str(tiny_model_dir), "--onnx-dir", str(onnx_dir),
                        "--new-tokens", "4", "--prompt-tokens", "12", "--batch", "1", "3",
                        "--backends", *CORE, "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    got = {(r["backend"], r["batch"]) for r in result["rows"]}
    assert got == {(b, n) for b in CORE for n in (1, 3)}
    for row in result["rows"]:
        assert row["prompt_tokens"] == 12 and row["new_tokens"] == 4
        assert row["ttft_ms"] > 0 and row["decode_tok_s"] > 0
    assert result["machine"]["cores_visible"] >= 1 and "CPUExecutionProvider" in result["machine"]["ort_providers"]
    assert "| optimum int4 | 3 |" in capsys.readouterr().out


def test_a_registered_runner_becomes_a_row(exported, tiny_model_dir, tmp_path, monkeypatch):
    for name in ("extra", "absent"):  # undone after the test: the registry is module-level
        monkeypatch.setitem(decode.BACKENDS, name, None)
    calls = []

    @decode.backend("extra")
    def extra(model: decode.BenchModel, case: decode.BenchCase) -> decode.Row:
        assert model.onnx_dir == exported[1] and all(len(p) == 12 for p in case.prompts)
        return decode.measure("extra", calls.append, case)

    @decode.backend("absent")
    def absent(model, case):
        raise decode.Skip("not here")

    out = tmp_path / "d.json"
    assert decode.main(["--model", str(tiny_model_dir), "--onnx-dir", str(exported[1]),
                        "--backends", "extra", "absent", "--new-tokens", "5", "--prompt-tokens", "12",
                        "--batch", "2", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [r["backend"] for r in result["rows"]] == ["extra"] and result["rows"][0]["batch"] == 2
    assert result["skipped"] == {"absent": "not here"}
    assert calls == [2, 1, 5]  # warm-up, first token, full run


@pytest.mark.slow
def test_random_init_builds_exports_and_reuses(shared, tmp_path, monkeypatch):
    small = dict(_setup.ARCHITECTURES["gpt-neo-125m"], hidden_size=16, num_layers=2, num_heads=2,
                 attention_types=[[["global", "local"], 1]], window_size=8, max_position_embeddings=64)
    monkeypatch.setitem(_setup.ARCHITECTURES, "gpt-neo-small", small)
    args = ["--random-init", "gpt-neo-small", "--cache-dir", str(tmp_path), "--new-tokens", "3",
            "--prompt-tokens", "16", "--batch", "1", "--backends", "optimum int8", "--gate",
            "--tokenizer", str(shared / "tokenizers" / "gpt2"), "--json", str(tmp_path / "r.json")]
    assert decode.main(args) == 0
    report = json.loads((tmp_path / "gpt-neo-small" / "onnx" / "export_report.json").read_text())
    assert report["gate"]["passed"] and report["files"]["int4"]["quantized_ops"]["MatMulNBits"] == 13
    config = json.loads((tmp_path / "gpt-neo-small" / "pytorch" / "config.json").read_text())
    assert config["vocab_size"] == 50257 and config["attention_layers"] == ["global", "local"]
    assert decode.main([*args, "--overwrite"]) == 0  # second run reuses the cached export


@pytest.mark.parametrize("argv, message", [
    (["--backends", "nope"], "unknown backend"),
    (["--new-tokens", "1"], "--new-tokens must be >= 2"),
])
def test_bench_bad_input_exits_2(argv, message, tiny_model_dir, capsys):
    assert decode.main(["--model", str(tiny_model_dir), *argv]) == 2
    assert message in capsys.readouterr().err


def test_measure_uses_ticks_from_one_run_and_checks_their_count():
    case = decode.BenchCase([[1, 2, 3]] * 2, new_tokens=6, repeats=2)
    lengths = []

    def run(n, tick):
        lengths.append(n)
        for _ in range(n):
            tick()

    row = decode.measure("ticked", run, case)
    assert lengths == [2, 6, 6]  # warm-up, then one run per repeat
    assert row.batch == 2 and row.prompt_tokens == 3 and row.ttft_ms >= 0 and row.decode_tok_s > 0

    with pytest.raises(RuntimeError, match="3 ticks for 6 tokens"):
        decode.measure("short", lambda n, tick: [tick() for _ in range(min(n, 3))], case)


def test_an_existing_json_is_refused_before_any_work(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "kept.json"
    out.write_text('{"tracked": true}')
    assert decode.main(["--model", str(tiny_model_dir), "--json", str(out)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert out.read_text() == '{"tracked": true}'


def test_default_json_path_is_a_new_file(exported, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(_setup, "REPO_ROOT", tmp_path)
    argv = ["--model", str(tiny_model_dir), "--onnx-dir", str(exported[1]), "--new-tokens", "2",
            "--prompt-tokens", "4", "--batch", "1", "--backends", "optimum fp32"]
    assert decode.main(argv) == 0
    written = list((tmp_path / "bench" / "results").glob("decode_*.json"))
    assert len(written) == 1 and json.loads(written[0].read_text())["rows"]


def test_weight_bytes_count_only_the_gathered_rows_of_tables(tmp_path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from bench import _floor

    table = numpy_helper.from_array(np.zeros((10, 4), np.float32), "table")  # 160 B, 16 B a row
    weight = numpy_helper.from_array(np.zeros((4, 3), np.float32), "weight")  # 48 B
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["h"]),
         helper.make_node("MatMul", ["h", "weight"], ["y"])], "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [table, weight])
    onnx.save(helper.make_model(graph), tmp_path / "g.onnx")
    assert _floor.weight_bytes_per_step(tmp_path / "g.onnx", batch=1) == {
        "total": 48 + 16, "dense": 48, "gathered_tables": 160}
    assert _floor.weight_bytes_per_step(tmp_path / "g.onnx", batch=3)["total"] == 48 + 48


def test_prefill_flops_by_hand():
    config = {"hidden_size": 2, "num_layers": 2, "intermediate_size": 8, "vocab_size": 5,
              "window_size": 2, "attention_layers": ["global", "local"]}
    # matmuls 2·3·2·(4·4 + 2·2·8) = 576; visible keys 1+2+3 (global) + 1+2+2 (local) = 11,
    # times 4·d = 88; one logits row 2·2·5 = 20.
    assert decode.prefill_flops(config, 3) == 576 + 88 + 20
