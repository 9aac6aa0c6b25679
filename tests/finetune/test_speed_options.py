"""--attn-implementation and --torch-compile: parsed, resolved by the device rule, recorded."""

import json

import pytest

from finetune.cli import main, parse_args
from finetune.config import ConfigError, validate
from finetune.defaults import (
    CPU_DEFAULTS,
    CPU_NO_COMPILER,
    cpu_defaults,
    speed_choices,
    training_arguments_kwargs,
)
from tests.finetune.conftest import train_argv


def test_unset_options_follow_the_device_rule_and_explicit_ones_win():
    cfg = parse_args(["--output-dir", "o"])
    assert (cfg.attn_implementation, cfg.torch_compile) == ("auto", None)
    assert cfg.speed() == cpu_defaults()  # this test machine has no GPU
    cfg = parse_args(["--output-dir", "o", "--attn-implementation", "eager", "--torch-compile",
                      "--precision", "bf16"])
    speed = cfg.speed()
    assert (speed.attn_implementation, speed.torch_compile, speed.precision) == ("eager", True, "bf16")
    assert parse_args(["--output-dir", "o", "--no-torch-compile"]).torch_compile is False
    written = cfg.to_dict()
    assert (written["attn_implementation"], written["torch_compile"]) == ("eager", True)
    assert written["speed"]["precision"] == "bf16"


def test_the_cpu_rule_compiles_only_where_a_cxx_compiler_is_found(monkeypatch, tmp_path):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no compiler
    assert speed_choices("cpu") == CPU_NO_COMPILER
    assert (CPU_NO_COMPILER.torch_compile, CPU_NO_COMPILER.attn_implementation) == (False, "eager")
    (tmp_path / "g++").write_text("#!/bin/sh\n")
    (tmp_path / "g++").chmod(0o755)
    assert speed_choices("cpu") == CPU_DEFAULTS
    assert (CPU_DEFAULTS.torch_compile, CPU_DEFAULTS.attn_implementation) == (True, "sdpa")
    monkeypatch.setenv("CXX", "no-such-compiler")  # $CXX, when set, is the one inductor uses
    assert speed_choices("cpu") == CPU_NO_COMPILER
    assert speed_choices("cpu", torch_compile=True).torch_compile  # the user's choice wins


def test_cuda_rule_and_the_training_arguments_it_gives(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    cuda = speed_choices("cuda")
    assert (cuda.precision, cuda.attn_implementation, cuda.optim, cuda.torch_compile,
            cuda.tf32) == ("bf16", "sdpa", "adamw_torch_fused", True, True)
    kwargs = training_arguments_kwargs(cuda)
    assert kwargs["bf16"] and kwargs["dataloader_pin_memory"]
    assert kwargs["dataloader_persistent_workers"] == (cuda.dataloader_num_workers > 0)
    assert not training_arguments_kwargs(speed_choices("cpu"))["bf16"]


def test_a_bad_attention_value_is_a_config_error():
    cfg = parse_args(["--output-dir", "o"])
    cfg.attn_implementation = "flash"
    with pytest.raises(ConfigError, match="--attn-implementation must be one of"):
        validate(cfg)


def test_cli_refuses_an_unknown_attention_with_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--output-dir", "o", "--attn-implementation", "flash"])
    assert exc.value.code == 2


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_tokenizer_dir):
    """Two 6-step runs from the same seed and data, one per attention path."""
    from tests.finetune.conftest import TINY_SCRATCH, write_release

    root = tmp_path_factory.mktemp("attn_runs")
    data = write_release(root / "release")
    scratch = root / "tiny.json"
    scratch.write_text(json.dumps(TINY_SCRATCH))
    out = {}
    for attn in ("eager", "sdpa"):
        out[attn] = root / attn
        argv = train_argv(data, out[attn], tiny_tokenizer_dir, scratch, root / "cache",
                          "--max-steps", "6", "--eval-steps", "3", "--logging-steps", "1",
                          "--attn-implementation", attn, "--report-to", "none")
        assert main(argv) == 0
    return out


def test_both_paths_train_to_the_same_losses(runs):
    """Trainer end to end: same init, same batches, so the same losses (fp32, 6 steps)."""
    curves = {}
    for attn, out in runs.items():
        history = json.loads((out / "trainer_state.json").read_text())["log_history"]
        curves[attn] = [e["loss"] for e in history if "loss" in e]
        metrics = json.loads((out / "metrics.json").read_text())
        curves[attn].append(metrics["after"]["test_loss"])
    assert len(curves["sdpa"]) == 7
    assert curves["sdpa"] == pytest.approx(curves["eager"], rel=1e-4)


def test_the_attention_is_recorded_in_config_metrics_and_card(runs):
    for attn, out in runs.items():
        assert json.loads((out / "finetune_config.json").read_text())["attn_implementation"] == attn
        assert json.loads((out / "metrics.json").read_text())["speed"]["attn_implementation"] == attn
        assert f"fp32, {attn} attention)" in (out / "README.md").read_text()
