"""bench/train.py end to end on a tiny model: 3 steps of (a) and (b), JSON and PNG written.

Correctness only: no timing is asserted (the figures of a busy test machine mean nothing).
"""

from __future__ import annotations

import json

import pytest
import torch

from bench import train
from tests.finetune.conftest import TINY_SCRATCH, make_abstract


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "abstracts.jsonl"
    path.write_text("".join(json.dumps({"id": str(i), "abstract": make_abstract(i)}) + "\n"
                            for i in range(60)))
    return path


@pytest.fixture
def tiny_json(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TINY_SCRATCH))
    return path


@pytest.mark.slow
def test_both_variants_run_and_write_json_and_png(tmp_path, corpus, tiny_json, tiny_tokenizer_dir,
                                                  capsys):
    out = tmp_path / "train.json"
    code = train.main(["--model-size", str(tiny_json), "--tokenizer", str(tiny_tokenizer_dir),
                       "--data", str(corpus), "--block-size", "32", "--batch-size", "2",
                       "--gradient-accumulation-steps", "2", "--steps", "3", "--warmup-steps", "1",
                       "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    a, b = result["variants"]
    assert (a["name"], b["name"]) == ("a", "b")
    assert a["speed"]["attn_implementation"] == a["attn_implementation_used"] == "eager"
    assert b["attn_implementation_used"] == "sdpa"  # the CPU rule's choice
    for v in (a, b):
        assert len(v["step_times_s"]) == 3 and len(v["losses"]) == 4
        assert v["tokens_per_step"] == 2 * 2 * 32 and v["tokens_per_s"] > 0
        assert v["peak_memory_bytes"] > 0 and v["flops_per_token"] > 6 * 1e4
    # fp32 both: same init and batches, so the same losses (the attention paths are equal).
    assert b["losses"] == pytest.approx(a["losses"], rel=1e-4)
    assert b["loss_max_rel_diff_vs_a"] < 1e-4 and a["vs_a"] == 1.0
    assert result["machine"]["cpu"] and result["settings"]["steps"] == 3
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| b | fp32 | sdpa |" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--try", "precision=fp16"], "precision takes one of"),
    (["--try", "colour=red"], "unknown key 'colour'"),
    (["--steps", "0"], "--steps must be >= 1"),
    (["--model-size", "no-such.json"], "neither gpt-neo-125m, demo nor a JSON file"),
])
def test_user_errors_end_in_one_line_and_exit_2(argv, message, corpus, capsys):
    assert train.main(["--data", str(corpus), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_a_corpus_too_short_for_the_run_is_a_user_error(corpus, tiny_json, tiny_tokenizer_dir,
                                                         capsys):
    code = train.main(["--model-size", str(tiny_json), "--tokenizer", str(tiny_tokenizer_dir),
                       "--data", str(corpus), "--block-size", "32", "--steps", "1000"])
    assert code == 2 and "fewer than the" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_a_gpu_is_a_user_error(corpus, capsys):
    assert train.main(["--device", "cuda", "--data", str(corpus)]) == 2
    assert "no CUDA GPU is visible" in capsys.readouterr().err


def test_try_changes_only_the_named_switches():
    base = train.device_defaults("cpu")
    name, choices = train.parse_try("precision=bf16,compile=on,workers=2", base)
    assert name == "b+precision=bf16,compile=on,workers=2"
    assert (choices.precision, choices.torch_compile, choices.dataloader_num_workers) == ("bf16", True, 2)
    assert choices.attn_implementation == base.attn_implementation and choices.optim == base.optim


@pytest.mark.slow
def test_a_failing_variant_is_reported_and_the_others_still_run(tmp_path, corpus, tiny_json,
                                                               tiny_tokenizer_dir, monkeypatch):
    real = train.run_one

    def run_one(spec, workdir):
        if spec["name"] == "b":
            raise RuntimeError("variant b failed (exit 1):\nRuntimeError: compile broke")
        return real(spec, workdir)

    monkeypatch.setattr(train, "run_one", run_one)
    out = tmp_path / "train.json"
    code = train.main(["--model-size", str(tiny_json), "--tokenizer", str(tiny_tokenizer_dir),
                       "--data", str(corpus), "--block-size", "32", "--batch-size", "2",
                       "--steps", "1", "--warmup-steps", "0", "--json", str(out)])
    result = json.loads(out.read_text())
    assert code == 1
    assert [v["name"] for v in result["variants"]] == ["a"]
    assert result["failed"][0]["name"] == "b" and "compile broke" in result["table"]
