"""Training a tiny GPT-Neo end to end, the output directory, and --resume."""

import json
import math
import re
import subprocess

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from finetune.cli import main, parse_args, run
from tests.finetune.conftest import train_argv


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_tokenizer_dir):
    """One 30-step run on fixture release files (shared by the checks on its output)."""
    from tests.finetune.conftest import TINY_SCRATCH, write_release

    root = tmp_path_factory.mktemp("trained")
    data = write_release(root / "release")
    scratch = root / "tiny.json"
    scratch.write_text(json.dumps(TINY_SCRATCH))
    out = root / "out"
    code = main(train_argv(data, out, tiny_tokenizer_dir, scratch, root / "cache",
                           "--max-steps", "30", "--eval-steps", "10"))
    assert code == 0
    return out


def test_eval_loss_falls_and_metrics_are_written(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    for split in ("validation", "test"):
        assert metrics["after"][f"{split}_perplexity"] < 0.8 * metrics["before"][f"{split}_perplexity"]
        assert metrics["after"][f"{split}_perplexity"] == pytest.approx(
            math.exp(metrics["after"][f"{split}_loss"]), rel=1e-3)
    history = json.loads((trained / "trainer_state.json").read_text())["log_history"]
    evals = [e["eval_loss"] for e in history if "eval_loss" in e]
    assert evals[-1] < evals[0]
    assert metrics["train_steps"] == 30
    assert metrics["tokens_seen"] == 30 * 4 * 32
    assert metrics["tokens_per_s"] > 0 and metrics["hardware"]["precision"] == "fp32"
    logged = [e for e in history if "loss" in e]
    assert all("tokens_per_s" in e and "tflops" in e for e in logged)
    assert metrics["data"]["abstracts"] == {"train": 120, "validation": 24, "test": 24}


def test_output_dir_is_a_loadable_model_that_generates(trained):
    names = {p.name for p in trained.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
            "metrics.json", "loss.png", "README.md", "finetune_config.json", "runs"} <= names
    config = json.loads((trained / "config.json").read_text())
    assert config["use_cache"] is True and config["window_size"] == 8
    assert config["attention_layers"] == ["global", "local"]
    assert (trained / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((trained / "runs").rglob("events.out.tfevents.*"))
    model = AutoModelForCausalLM.from_pretrained(trained)
    tok = AutoTokenizer.from_pretrained(trained)
    assert config["vocab_size"] == len(tok)
    ids = tok("We propose a new method for", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]
    assert isinstance(tok.decode(out[0]), str)


def test_model_card_has_hub_metadata_and_usage(trained):
    text = (trained / "README.md").read_text()
    front = yaml.safe_load(text.split("---")[1])
    assert front["pipeline_tag"] == "text-generation"
    assert front["datasets"] == ["yaolu/multi_x_science_sum"]
    assert front["license"] == "mit" and "base_model" not in front  # trained from scratch
    metric = front["model-index"][0]["results"][1]["metrics"][0]
    after = json.loads((trained / "metrics.json").read_text())["after"]
    assert metric == {"type": "perplexity", "value": after["test_perplexity"],
                      "name": "Test perplexity"}
    for snippet in ("AutoModelForCausalLM.from_pretrained(", 'pipeline("text-generation"',
                    'ORTModelForCausalLM.from_pretrained(', 'subfolder="onnx"', "python app.py"):
        assert snippet in text


class StopAt(TrainerCallback):
    """Ends training right after step k (its checkpoint is saved in the same step)."""

    def __init__(self, k):
        self.k = k

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.k:
            control.should_training_stop = True


class Record(TrainerCallback):
    def __init__(self):
        self.first_step = None
        self.lrs = {}

    def on_step_begin(self, args, state, control, **kwargs):
        if self.first_step is None:
            self.first_step = state.global_step

    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        self.lrs[state.global_step] = optimizer.param_groups[0]["lr"]


def test_resume_continues_from_the_last_checkpoint(release_dir, tmp_path, tiny_tokenizer_dir,
                                                   scratch_json):
    from transformers import get_cosine_schedule_with_warmup

    out = tmp_path / "out"
    argv = train_argv(release_dir, out, tiny_tokenizer_dir, scratch_json, tmp_path / "cache",
                      "--max-steps", "20", "--eval-steps", "5", "--warmup-ratio", "0.2")
    run(parse_args(argv), log=lambda _: None, callbacks=[StopAt(10)])
    assert (out / "checkpoint-10").is_dir() and not (out / "checkpoint-15").exists()
    assert main(argv) == 2  # a fresh run into a dir with checkpoints is refused
    # What `kill -9` during a save leaves: a checkpoint folder with its config and a temp file.
    (out / "checkpoint-15").mkdir()
    (out / "checkpoint-15" / "config.json").write_text("{}")
    (out / "checkpoint-15" / "tmpk2j3.safetensors").write_bytes(b"\0" * 64)

    record, lines = Record(), []
    run(parse_args([*argv, "--resume"]), log=lines.append, callbacks=[record])
    assert any("skipping checkpoint-15, which is incomplete" in line for line in lines)
    assert "finetune: resuming from checkpoint-10" in lines
    assert record.first_step == 10
    assert sorted(record.lrs) == list(range(11, 21))
    state = json.loads((out / "checkpoint-20" / "trainer_state.json").read_text())
    assert state["global_step"] == 20
    # The schedule continues: the LR after each resumed step is the cosine schedule's value
    # for the whole 20-step run (warmup 4 steps), from transformers' own scheduler.
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=3e-3)
    sched = get_cosine_schedule_with_warmup(opt, num_warmup_steps=4, num_training_steps=20)
    reference = {}
    for step in range(1, 21):
        opt.step()
        sched.step()
        reference[step] = sched.get_last_lr()[0]
    for step, lr in record.lrs.items():
        assert lr == pytest.approx(reference[step], rel=1e-6)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_steps"] == 20 and metrics["tokens_seen"] == 20 * 4 * 32
    assert metrics["before"] == json.loads((out / "baseline_metrics.json").read_text())


def test_resume_without_checkpoint_exits_2(tmp_path, capsys, release_dir, tiny_tokenizer_dir,
                                           scratch_json):
    argv = train_argv(release_dir, tmp_path / "none", tiny_tokenizer_dir, scratch_json,
                      tmp_path / "cache", "--resume")
    assert main(argv) == 2
    assert "no complete checkpoint-* directory" in capsys.readouterr().err


def test_finetune_from_a_pretrained_model_dir(tmp_path, release_dir, tiny_model_dir):
    """Without --from-scratch the weights of --model are the start (and its card names it)."""
    from safetensors.torch import load_file

    out = tmp_path / "ft"
    argv = ["--no-torch-compile", "--model", str(tiny_model_dir), "--data", str(release_dir), "--output-dir", str(out),
            "--cache-dir", str(tmp_path / "cache"), "--block-size", "32", "--batch-size", "4",
            "--gradient-accumulation-steps", "1", "--max-steps", "6", "--eval-steps", "3",
            "--min-words", "3", "--learning-rate", "1e-3"]
    assert main(argv) == 0
    start = load_file(tiny_model_dir / "model.safetensors")
    end = load_file(out / "model.safetensors")
    assert start.keys() == end.keys()
    assert any(not torch.equal(start[k], end[k]) for k in start)
    # Same architecture as the start, and the baseline is the start model's perplexity.
    assert json.loads((out / "config.json").read_text())["hidden_size"] == 32
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["after"]["validation_loss"] < metrics["before"]["validation_loss"]
    card = (out / "README.md").read_text()
    assert "base_model" not in yaml.safe_load(card.split("---")[1])  # a local dir is no Hub id
    assert f"fine-tuned from `{tiny_model_dir}`" in card


def test_a_diverging_run_stops_with_one_line_and_writes_no_model(tmp_path, capsys, release_dir,
                                                                 tiny_tokenizer_dir, scratch_json):
    """A huge (finite) learning rate blows the loss up to NaN/inf within a few steps."""
    out = tmp_path / "out"
    argv = train_argv(release_dir, out, tiny_tokenizer_dir, scratch_json, tmp_path / "cache",
                      "--max-steps", "12", "--eval-steps", "6", "--logging-steps", "1")
    argv[argv.index("--learning-rate") + 1] = "1e30"
    code = main(argv)
    line = _one_error_line(capsys.readouterr().err)
    assert code == 1 and line.startswith("error: training diverged: loss is nan")
    assert not (out / "model.safetensors").exists() and not (out / "metrics.json").exists()


def test_bf16_precision_trains_on_cpu_with_fp32_weights(tmp_path, release_dir, tiny_model_dir):
    """--precision bf16 runs mixed precision (autocast) where auto would pick fp32: the loss
    falls, the saved weights stay fp32 and the metrics say bf16."""
    from safetensors.torch import load_file

    out = tmp_path / "bf16"
    argv = ["--no-torch-compile", "--model", str(tiny_model_dir), "--data", str(release_dir), "--output-dir", str(out),
            "--cache-dir", str(tmp_path / "cache"), "--block-size", "32", "--batch-size", "4",
            "--gradient-accumulation-steps", "1", "--max-steps", "6", "--eval-steps", "3",
            "--min-words", "3", "--learning-rate", "1e-3", "--precision", "bf16"]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["hardware"]["precision"] == "bf16"
    assert metrics["after"]["validation_loss"] < metrics["before"]["validation_loss"]
    assert {t.dtype for t in load_file(out / "model.safetensors").values()} == {torch.float32}


def _one_error_line(text: str) -> str:
    """The single `error: ...` line of stderr (Trainer's progress bars share it, with \\r)."""
    errors = re.findall(r"error: [^\r\n]*", text)
    assert len(errors) == 1 and "Traceback" not in text, text[-3000:]
    return errors[0]


def _nothing_loadable(out) -> None:
    """No final model a later load would take as complete, and no staging folder left over."""
    assert not (out / "config.json").exists() and not (out / "model.safetensors").exists()
    assert not (out / "metrics.json").exists()
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    with pytest.raises((OSError, ValueError)):  # no config.json: not a model
        AutoModelForCausalLM.from_pretrained(out)


def test_a_full_disk_at_the_tokenizer_save_is_one_line_and_leaves_no_model(
        tmp_path, capsys, monkeypatch, release_dir, tiny_tokenizer_dir, scratch_json):
    """The tokenizers library reports a full disk as `Exception: No space left on device`,
    after the weights and config.json were written: faked here, at that very call."""
    from transformers import PreTrainedTokenizerBase

    def full(self, *args, **kwargs):
        raise Exception("No space left on device (os error 28)")

    monkeypatch.setattr(PreTrainedTokenizerBase, "save_pretrained", full)
    out = tmp_path / "out"
    code = main(train_argv(release_dir, out, tiny_tokenizer_dir, scratch_json, tmp_path / "cache",
                           "--max-steps", "4", "--eval-steps", "2", "--report-to", "none"))
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2 and line.startswith("error: the disk is full") and str(out) in line, line
    _nothing_loadable(out)


@pytest.fixture
def small_disk(tmp_path):
    """A real 30 MB tmpfs (skipped where mounting is not permitted)."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=30m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


class FillDisk(TrainerCallback):
    """Fills the disk holding `folder` when training ends, just before the final save."""

    def __init__(self, folder):
        self.filler = folder / "filler.bin"

    def on_train_end(self, args, state, control, **kwargs):
        block = b"\0" * (1 << 16)
        with open(self.filler, "wb") as f:
            try:
                while True:
                    f.write(block)
                    f.flush()
            except OSError:
                pass


def test_a_real_full_disk_at_the_final_save_is_one_line_and_resume_finishes(
        small_disk, tmp_path, capsys, monkeypatch, release_dir, tiny_tokenizer_dir, scratch_json):
    import finetune.train

    real = finetune.train.make_trainer
    fill = FillDisk(small_disk)
    monkeypatch.setattr(finetune.train, "make_trainer", lambda *a, **k: real(
        *a[:5], [*(a[5] if len(a) > 5 else k.get("callbacks", ())), fill]))
    out = small_disk / "out"
    argv = train_argv(release_dir, out, tiny_tokenizer_dir, scratch_json, tmp_path / "cache",
                      "--max-steps", "6", "--eval-steps", "3", "--report-to", "none")
    code = main(argv)
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2 and line.startswith("error: the disk is full") and str(out) in line, line
    _nothing_loadable(out)
    # The checkpoints written before the disk filled are complete: free space, --resume.
    monkeypatch.setattr(finetune.train, "make_trainer", real)
    fill.filler.unlink()
    assert main([*argv, "--resume"]) == 0
    assert AutoModelForCausalLM.from_pretrained(out).config.window_size == 8
