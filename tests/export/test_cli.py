"""The export CLI end to end on the tiny GPT-Neo (window 8 < the gate's prompts)."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest

from export.cli import main
from export.optimum.quantize import count_ops


def test_export_passes_gate_and_writes_the_directory(exported):
    code, out = exported
    assert code == 0
    for name in ("model.onnx", "model_int8.onnx", "model_int4.onnx", "config.json",
                 "generation_config.json", "tokenizer.json", "README.md", "export_report.json"):
        assert (out / name).is_file(), name
    report = json.loads((out / "export_report.json").read_text())
    assert report["gate"]["passed"] is True
    names = [c["name"] for c in report["gate"]["checks"]]
    assert any("long b1 cached steps" in n for n in names)
    assert any("left-padded b2 prefill" in n for n in names)
    assert {"int8 perplexity increase", "int4 perplexity increase"} <= set(names)
    logit_checks = [c for c in report["gate"]["checks"] if c["name"].startswith("fp32 logits")]
    assert len(logit_checks) == 6 and all(c["value"] <= 1e-4 for c in logit_checks)
    assert report["files"]["int4"]["bytes"] < report["files"]["fp32"]["bytes"]
    assert report["versions"]["onnx"] and "timings_s" in report
    card = (out / "README.md").read_text()
    assert "## ONNX export" in card and "model_int8.onnx" in card and "decode.json" in card


def test_export_writes_the_decode_graphs_that_passed_and_decode_json(exported):
    _, out = exported
    manifest = json.loads((out / "decode.json").read_text())
    assert manifest["files"] == {p: f"decode_{p}.onnx" for p in ("fp32", "int8", "int4")}
    assert all((out / f).is_file() for f in manifest["files"].values())
    assert manifest["default"] in manifest["files"] and manifest["windows"] == [0, 8]
    assert (manifest["layers"], manifest["heads"], manifest["head_dim"], manifest["context"]) == (2, 4, 8, 256)
    checks = manifest["gate"]["checks"]
    for label in ("past the window b1", "whole context b1", "different lengths b3"):
        assert checks[f"decode fp32 logits {label} cached steps"] <= 1e-4
    assert checks["decode fp32 greedy 64 tokens vs transformers generate"] == 0
    assert {"decode int8 perplexity increase", "decode int4 greedy-token agreement"} <= set(checks)
    assert set(manifest["gate"]["cpu_ms_per_step_batch1"]) == {"fp32", "int8", "int4"}
    assert count_ops(out / "decode_int4.onnx")["MatMulNBits"] == 2 * 4 + 1


@pytest.mark.parametrize("file_name", ["model.onnx", "model_int8.onnx"])
def test_output_loads_with_optimum_and_matches_transformers_greedy(exported, tiny_model_dir, file_name):
    import torch
    from optimum.onnxruntime import ORTModelForCausalLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, out = exported
    tok = AutoTokenizer.from_pretrained(out)
    ort_model = ORTModelForCausalLM.from_pretrained(out, file_name=file_name)
    ref = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    ids = tok(["We propose a new method for learning sparse representations"], return_tensors="pt")
    kwargs = dict(max_new_tokens=12, do_sample=False, pad_token_id=tok.eos_token_id)
    got = ort_model.generate(**ids, **kwargs)
    with torch.no_grad():
        want = ref.generate(**ids, **kwargs)
    assert got.shape[1] > ids.input_ids.shape[1]
    if file_name == "model.onnx":
        assert got.tolist() == want.tolist()


def test_quantized_files_hold_quantized_matmuls_and_run(exported):
    from export.optimum.gate import open_runner

    _, out = exported
    fp32, int8, int4 = (count_ops(out / f) for f in ("model.onnx", "model_int8.onnx", "model_int4.onnx"))
    # 2 layers x (q, k, v, out, fc, proj) + lm_head = 13 weight MatMuls; the 4 attention
    # products (activation x activation) stay float MatMuls.
    assert fp32["MatMul"] == 17 and fp32["MatMulInteger"] == 0
    assert int8["MatMulInteger"] + int8["DynamicQuantizeMatMul"] == 13 and int8["MatMul"] == 4
    assert int4["MatMulNBits"] == 13 and int4["MatMul"] == 4
    ids = np.array([[5, 6, 7, 8, 9, 10, 11, 12, 13, 14]])

    def prefill(name):
        runner = open_runner(out / name)
        cache = runner.new_cache(1, ids.shape[1])
        logits = runner.prefill(cache, 0, ids[0].tolist(), keep=ids.shape[1])[None]
        return logits, dict(zip(runner.io.past, (v.shape() for v in cache.values), strict=True))

    reference = prefill("model.onnx")[0]
    for name in ("model_int8.onnx", "model_int4.onnx"):
        logits, cache = prefill(name)
        assert logits.shape == reference.shape and np.isfinite(logits).all()
        assert 0 < np.abs(logits - reference).max() < 0.5 * np.abs(reference).max()
        assert cache["past_key_values.1.value"][2] == ids.shape[1]


def _bad_model_dirs(tmp_path, tiny_model_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert"}))
    return empty, bert


@pytest.mark.parametrize("case, message", [
    ("not_a_model_dir", "not a model directory"),
    ("missing_path", "no such directory"),
    ("not_causal", "is not a causal language model"),
    ("unknown_quantization", "invalid choice: 'int3'"),
    ("non_empty_output", "exists and is not empty"),
    ("bad_block_size", "power of two"),
    ("output_is_a_file", "is a file, not a directory"),
])
def test_bad_input_exits_2_with_one_line(case, message, tmp_path, tiny_model_dir, capsys):
    empty, bert = _bad_model_dirs(tmp_path, tiny_model_dir)
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("do not lose me")
    model, out, extra = str(tiny_model_dir), str(tmp_path / "out"), []
    if case == "not_a_model_dir":
        model = str(empty)
    elif case == "missing_path":
        model = str(tmp_path / "nope" / "model")
    elif case == "not_causal":
        model = str(bert)
    elif case == "unknown_quantization":
        extra = ["--quantize", "int3"]
    elif case == "non_empty_output":
        out = str(full)
    elif case == "bad_block_size":
        extra = ["--int4-block-size", "24"]
    elif case == "output_is_a_file":
        out, extra = str(full / "keep.txt"), ["--overwrite"]
    assert main(["--model", model, "--output-dir", out, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert (full / "keep.txt").read_text() == "do not lose me"
    assert not (tmp_path / "out").exists()


def test_push_uploads_into_onnx_folder_after_gate(tmp_path, tiny_model_dir, fake_hub, capsys):
    out = tmp_path / "onnx"
    code = main(["--model", str(tiny_model_dir), "--output-dir", str(out), "--quantize", "none",
                 "--push-to-hub", "someone/neo-xscience"])
    assert code == 0
    upload = dict(fake_hub.calls)["upload_folder"]
    assert upload["path_in_repo"] == "onnx" and upload["repo_id"] == "someone/neo-xscience"
    assert upload["folder_path"] == str(out)
    assert not (out / "model_int8.onnx").exists()


def test_failing_gate_exits_1_prints_numbers_and_pushes_nothing(
        tmp_path, tiny_model_dir, fake_hub, monkeypatch, capsys):
    import export.pipeline as pipeline
    from tests.export.test_gate import perturb_initializer

    real_export = pipeline.export_fp32

    def altered_export(model_dir, out, device="cpu"):
        path = real_export(model_dir, out, device)
        perturb_initializer(path)
        return path

    monkeypatch.setattr(pipeline, "export_fp32", altered_export)
    code = main(["--model", str(tiny_model_dir), "--output-dir", str(tmp_path / "o"),
                 "--quantize", "none", "--push-to-hub", "someone/neo-xscience"])
    err = capsys.readouterr().err
    assert code == 1
    assert "validation gate FAILED" in err and "FAIL fp32 logits short b1 prefill" in err
    assert fake_hub.calls == []
    # Nothing that failed is published: only the report is kept, beside the directory.
    assert not (tmp_path / "o").exists() and "nothing written to" in err
    report = json.loads((tmp_path / "o.gate-failed.json").read_text())
    assert report["gate"]["passed"] is False
    assert [p.name for p in tmp_path.iterdir()] == ["o.gate-failed.json"]


def test_module_entry_point_reports_an_unreachable_hub_in_one_line(tmp_path):
    import os
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    env = dict(os.environ, HF_ENDPOINT="http://127.0.0.1:9", HF_HUB_ETAG_TIMEOUT="2",
               HF_HUB_CACHE=str(tmp_path / "hub"))
    proc = subprocess.run([sys.executable, "-m", "export", "--model", "someone/no-such-model",
                           "--output-dir", str(tmp_path / "out")], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: --model someone/no-such-model: cannot download")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_model_card_keeps_the_input_card_and_replaces_an_old_export_section(tmp_path):
    from export.card import CARD_MARK, write_model_card

    model_dir, out = tmp_path / "m", tmp_path / "o"
    model_dir.mkdir()
    out.mkdir()
    (model_dir / "README.md").write_text(f"# Fine-tuned\n\nTrained on abstracts.\n\n{CARD_MARK}\n\nstale\n")
    report = {"files": {"fp32": {"file": "model.onnx", "bytes": 2_000_000, "quantized_ops": {}}},
              "gate": {"passed": True, "seconds": 1.0, "checks": [
                  {"name": "fp32 logits short b1 prefill", "value": 3e-6, "limit": 1e-4, "passed": True}]}}
    text = write_model_card(model_dir, out, report).read_text()
    assert text.startswith("# Fine-tuned\n\nTrained on abstracts.")
    assert text.count(CARD_MARK) == 1 and "stale" not in text
    assert "| fp32 logits short b1 prefill | 3e-06 | 0.0001 | pass |" in text
    assert 'file_name="model.onnx"' in text


def _corrupt(model_dir, how: str):
    weights = model_dir / "model.safetensors"
    data = bytearray(weights.read_bytes())
    if how == "flipped bytes":  # inside the JSON header that says where each tensor is
        for i in range(12, 40):
            data[i] ^= 0xFF
    elif how == "truncated":
        data = data[: len(data) // 2]
    elif how == "random bytes":
        data = bytearray(np.random.default_rng(0).integers(0, 256, len(data), dtype=np.uint8))
    elif how == "hidden_size abc":
        config = json.loads((model_dir / "config.json").read_text())
        (model_dir / "config.json").write_text(json.dumps(dict(config, hidden_size="abc")))
    weights.write_bytes(bytes(data))


@pytest.mark.parametrize("case", ["flipped bytes", "truncated", "random bytes", "hidden_size abc",
                                  "--atol nan", "--max-ppl-increase-int8 inf",
                                  "--max-ppl-increase-int4 -inf", "--min-greedy-agreement nan"])
def test_corrupted_checkpoint_or_non_finite_limit_exits_2_in_one_line(case, tmp_path, tiny_model_dir,
                                                                       capsys):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    extra = case.split() if case.startswith("--") else []
    if not extra:
        _corrupt(model, case)
    assert main(["--model", str(model), "--output-dir", str(tmp_path / "out"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("change, message", [
    ({"num_layers": 1_000_000, "attention_types": [[["global", "local"], 500_000]],
      "attention_layers": ["global", "local"] * 500_000}, "num_layers is 1000000 but the weights hold 2"),
    ({"hidden_size": 64}, "transformer.wte.weight has shape (400, 32) (config.json implies (400, 64))"),
])
def test_a_config_that_disagrees_with_the_checkpoint_is_refused_at_once(change, message, tmp_path,
                                                                         tiny_model_dir, capsys):
    import optimum.exporters.tasks  # noqa: F401  (imported once by any export: not timed here)

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps(dict(config, **change)))
    start = time.perf_counter()
    assert main(["--model", str(model), "--output-dir", str(tmp_path / "out")]) == 2
    seconds = time.perf_counter() - start
    assert seconds < 5, f"{seconds:.1f} s: the check must come before anything is built"  # was 18 s
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_overwrite_removes_an_earlier_exports_files(exported, tmp_path, tiny_model_dir):
    _, earlier = exported
    out = tmp_path / "onnx"
    out.mkdir()
    for name in ("model_int8.onnx", "model_int4.onnx", "decode_int4.onnx", "decode.json"):
        shutil.copy(earlier / name, out / name)
    (out / "notes.txt").write_text("mine")
    code = main(["--model", str(tiny_model_dir), "--output-dir", str(out), "--overwrite",
                 "--quantize", "none", "--decode", "none"])
    assert code == 0
    assert not any((out / n).exists() for n in ("model_int8.onnx", "model_int4.onnx", "decode_int4.onnx"))
    assert json.loads((out / "decode.json").read_text())["files"] == {"fp32": "decode_fp32.onnx"}
    assert (out / "model.onnx").is_file() and (out / "notes.txt").read_text() == "mine"


def test_a_decode_graph_that_fails_the_gate_is_not_written(tmp_path, tiny_model_dir):
    from export.gate.settings import GateSettings
    from export.pipeline import ExportOptions, export_model

    settings = GateSettings(greedy_tokens=8, eval_tokens=64,
                            max_ppl_increase={"int8": 0.01, "int4": -1.0})  # int4 cannot pass
    options = ExportOptions(tiny_model_dir, tmp_path / "o", (), decode=("int4",), settings=settings,
                            int4_block_size=16)
    result = export_model(options, log=lambda _: None)
    assert not result.passed
    assert [c.name for c in result.gate.failures] == ["decode int4 perplexity increase"]
    assert not (tmp_path / "o" / "decode_int4.onnx").exists()
    manifest = json.loads((tmp_path / "o" / "decode.json").read_text())
    assert manifest["files"] == {"fp32": "decode_fp32.onnx"} and manifest["default"] == "fp32"
