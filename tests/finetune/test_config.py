"""Options: --help, validation listing every problem, presets and JSON configs."""

import json

import pytest

from finetune.cli import build_parser, main, parse_args
from finetune.config import PRESETS, ConfigError, scratch_config_fields, validate

ISSUE_OPTIONS = ["--model", "--data", "--output-dir", "--tokenizer", "--from-scratch",
                 "--block-size", "--epochs", "--max-steps", "--batch-size",
                 "--gradient-accumulation-steps", "--learning-rate", "--eval-steps",
                 "--save-steps", "--seed", "--resume", "--torch-compile", "--text-field",
                 "--cache-dir", "--push-to-hub", "--max-train-samples", "--max-eval-samples"]


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ISSUE_OPTIONS:
        assert flag in text
    for action in build_parser()._actions:
        assert action.help and len(action.help) > 10, action.option_strings


def test_defaults_fit_the_issue():
    cfg = parse_args(["--output-dir", "out"])
    assert (cfg.model, cfg.data, cfg.block_size) == ("EleutherAI/gpt-neo-125m", "multi-xscience", 512)
    assert cfg.lr == 5e-5 and parse_args(["--output-dir", "o", "--from-scratch", "tiny"]).lr == 6e-4


def test_unknown_flag_exits_2():
    with pytest.raises(SystemExit) as exc:
        main(["--output-dir", "x", "--no-such-flag"])
    assert exc.value.code == 2


def test_validation_lists_every_problem_at_once(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")  # so only the repo id is wrong
    argv = ["--output-dir", str(tmp_path), "--data", str(tmp_path / "nope.jsonl"),
            "--block-size", "0", "--learning-rate", "-1", "--eval-steps", "10", "--save-steps", "15",
            "--from-scratch", "huge", "--val-fraction", "0.7", "--push-to-hub", "a/b/c d"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert all(line.startswith("error: ") for line in err)
    text = "\n".join(err)
    for fragment in ("--block-size must be >= 1", "--learning-rate must be > 0",
                     "--save-steps (15) must be a multiple of --eval-steps (10)",
                     "nope.jsonl: no such file", "--from-scratch huge: neither a preset",
                     "--val-fraction must be in (0, 0.5)", "is not a repo id"):
        assert fragment in text
    assert len(err) == 7


def test_block_larger_than_positions_and_bad_json(tmp_path):
    with pytest.raises(ConfigError, match="exceeds the model's max_position_embeddings"):
        validate(parse_args(["--output-dir", "o", "--from-scratch", "tiny", "--block-size", "4096"]))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not JSON"):
        validate(parse_args(["--output-dir", "o", "--from-scratch", str(bad)]))


def test_push_without_token_is_refused_before_training(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "hf" / "token"))
    with pytest.raises(ConfigError, match="needs a Hugging Face token"):
        validate(parse_args(["--output-dir", "o", "--push-to-hub", "me/model"]))


def test_presets_and_json_build_gpt_neo_configs(tmp_path, tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    from finetune.train import build_model

    neo = PRESETS["gpt-neo-125m"]
    assert (neo["hidden_size"], neo["num_layers"], neo["num_heads"], neo["window_size"],
            neo["max_position_embeddings"]) == (768, 12, 12, 256, 2048)
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"hidden_size": 16, "num_layers": 2, "num_heads": 2,
                                "attention_types": [[["global", "local"], 1]], "window_size": 4,
                                "max_position_embeddings": 32}))
    assert scratch_config_fields(str(path))["window_size"] == 4
    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    model = build_model(parse_args(["--output-dir", "o", "--from-scratch", str(path),
                                    "--block-size", "32"]), tok)
    assert model.config.vocab_size == len(tok)
    assert model.config.eos_token_id == tok.eos_token_id and model.config.use_cache
    assert model.config.attention_layers == ["global", "local"]
    path.write_text(json.dumps({"num_layers": 3, "attention_types": [[["global", "local"], 1]]}))
    with pytest.raises(ConfigError, match="--from-scratch"):
        build_model(parse_args(["--output-dir", "o", "--from-scratch", str(path)]), tok)


FLOAT_OPTIONS = ["--epochs", "--learning-rate", "--warmup-ratio", "--weight-decay",
                 "--val-fraction", "--test-fraction", "--peak-tflops"]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_float_options_are_refused_before_any_work(tmp_path, capsys, no_run, value):
    out = tmp_path / "out"
    argv = ["--output-dir", str(out)]
    for flag in FLOAT_OPTIONS:
        argv += [f"{flag}={value}"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert all(line.startswith("error: ") for line in err)
    for flag in FLOAT_OPTIONS:
        assert sum(f"{flag} must be a finite number (got {value})" in line for line in err) == 1, flag
    assert len(err) == len(FLOAT_OPTIONS) and not out.exists()


def test_a_negative_learning_rate_is_parsed_then_refused(tmp_path, capsys, no_run):
    assert parse_args(["--output-dir", "o", "--learning-rate", "-1e-3"]).learning_rate == -1e-3
    assert main(["--output-dir", str(tmp_path / "o"), "--learning-rate", "-1e-3"]) == 2
    assert capsys.readouterr().err == "error: --learning-rate must be > 0 (got -0.001)\n"


def test_report_to_picks_the_trackers(tmp_path):
    from finetune.train import training_arguments

    assert training_arguments(parse_args(["--output-dir", str(tmp_path)])).report_to == ["tensorboard"]
    none = parse_args(["--output-dir", str(tmp_path), "--report-to", "none"])
    assert training_arguments(none).report_to == []
    with pytest.raises(SystemExit):
        parse_args(["--output-dir", "o", "--report-to", "mlflow"])


def test_precision_picks_bf16_or_fp32(tmp_path, monkeypatch):
    import torch

    from finetune.train import training_arguments

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = ["--output-dir", str(tmp_path)]
    assert training_arguments(parse_args(argv)).bf16 is False  # auto: fp32 on CPU
    assert training_arguments(parse_args([*argv, "--precision", "bf16"])).bf16 is True
    assert training_arguments(parse_args([*argv, "--precision", "fp32"])).bf16 is False
    with pytest.raises(SystemExit):
        parse_args([*argv, "--precision", "fp16"])


def test_report_to_wandb_needs_wandb_installed(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError, match="--report-to wandb needs the wandb package"):
        validate(parse_args(["--output-dir", "o", "--report-to", "wandb"]))
