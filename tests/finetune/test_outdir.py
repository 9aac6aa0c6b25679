"""The output and cache directories: checked before anything loads, never silently reused."""

import json
from pathlib import Path

import pytest

from finetune.cli import main, parse_args
from finetune.outdir import check_output_dir, last_complete_checkpoint

COMPLETE = ("config.json", "model.safetensors", "optimizer.pt", "scheduler.pt")


def _cli(tmp_path, capsys, *argv) -> tuple[int, list[str]]:
    """`python -m finetune --data A_TXT ARGV...` (with `no_run`); (exit code, stderr lines)."""
    data = tmp_path / "data.txt"
    data.write_text("one abstract\n")
    code = main(["--data", str(data), *argv])
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: (p / "file").write_text("x") and ["--output-dir", str(p / "file")], "is not a directory"),
    (lambda p: ["--output-dir", "/dev/null/out"], "/dev/null is not a directory"),
    (lambda p: ["--output-dir", "/proc/neo-xscience-out"], "cannot write in /proc"),
    (lambda p: (p / "c").write_text("x") and ["--output-dir", str(p / "o"), "--cache-dir", str(p / "c")],
     "--cache-dir"),
])
def test_unusable_paths_are_one_line_before_loading(tmp_path, capsys, no_run, make, message):
    code, err = _cli(tmp_path, capsys, *make(tmp_path))
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_path_and_option_problems_are_listed_together(tmp_path, capsys, no_run):
    code, err = _cli(tmp_path, capsys, "--output-dir", "/dev/null/out",
                     "--cache-dir", "/dev/null/cache", "--epochs", "inf")
    assert code == 2 and err == [
        "error: --epochs must be a finite number (got inf)",
        "error: --output-dir /dev/null/out: /dev/null is not a directory",
        "error: --cache-dir /dev/null/cache: /dev/null is not a directory"]


def _finished(out: Path) -> Path:
    out.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "metrics.json", "README.md"):
        (out / name).write_text("earlier run")
    return out


def test_a_finished_model_is_not_overwritten_without_overwrite(tmp_path, capsys, no_run):
    out = _finished(tmp_path / "out")
    code, err = _cli(tmp_path, capsys, "--output-dir", str(out))
    assert code == 2 and len(err) == 1 and "--overwrite" in err[0] and "model.safetensors" in err[0]
    assert (out / "model.safetensors").read_text() == "earlier run"


def test_any_file_the_run_would_replace_is_kept_but_a_failed_start_is_not(tmp_path, capsys,
                                                                           no_run):
    project = tmp_path / "project"
    project.mkdir()
    (project / "README.md").write_text("the user's own README")
    code, err = _cli(tmp_path, capsys, "--output-dir", str(project))
    assert code == 2 and len(err) == 1 and "README.md" in err[0] and "--overwrite" in err[0]
    failed = tmp_path / "failed"
    failed.mkdir()
    (failed / "finetune_config.json").write_text("{}")  # what a run that died loading data leaves
    check_output_dir(parse_args(["--output-dir", str(failed)]))


def test_overwrite_lets_the_run_start_and_clears_the_earlier_run(tmp_path):
    from finetune.outdir import clear_earlier_run

    out = _finished(tmp_path / "out")
    (out / "checkpoint-40").mkdir()
    (out / "notes.txt").write_text("the user's own file")
    cfg = parse_args(["--output-dir", str(out), "--overwrite"])
    check_output_dir(cfg)
    clear_earlier_run(cfg, log=lambda _: None)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def _checkpoint(out: Path, step: int, files=COMPLETE, state=True) -> Path:
    path = out / f"checkpoint-{step}"
    path.mkdir(parents=True)
    for name in files:
        (path / name).write_bytes(b"x")
    if state:
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return path


def test_last_complete_checkpoint_skips_half_written_ones(tmp_path):
    out = tmp_path / "run"
    _checkpoint(out, 4)
    good = _checkpoint(out, 8)
    _checkpoint(out, 12, files=("config.json", "tmpabc.safetensors"), state=False)
    _checkpoint(out, 16, files=COMPLETE, state=False)
    (out / "checkpoint-20").mkdir()
    (out / "checkpoint-20" / "trainer_state.json").write_text('{"global_st')
    path, skipped = last_complete_checkpoint(out)
    assert path == good
    assert [p.name for p in skipped] == ["checkpoint-20", "checkpoint-16", "checkpoint-12"]
    assert last_complete_checkpoint(tmp_path / "none") == (None, [])


def test_resume_with_only_an_incomplete_checkpoint_says_so(tmp_path, capsys, no_run):
    out = tmp_path / "out"
    _checkpoint(out, 8, files=("config.json",), state=False)
    (out / "finetune_config.json").write_text("{}")
    code, err = _cli(tmp_path, capsys, "--output-dir", str(out), "--resume")
    assert code == 2 and len(err) == 1
    assert "no complete checkpoint" in err[0] and "checkpoint-8 is incomplete" in err[0]
    # What --overwrite would delete, and that it does: not a bare pointer to the other flag.
    assert "--overwrite deletes checkpoint-8, finetune_config.json" in err[0], err[0]


def test_a_plain_run_beside_only_incomplete_checkpoints_is_not_sent_to_resume(tmp_path, capsys,
                                                                              no_run):
    out = tmp_path / "out"
    _checkpoint(out, 8, files=("config.json",), state=False)
    _checkpoint(out, 4, files=COMPLETE, state=False)
    code, err = _cli(tmp_path, capsys, "--output-dir", str(out))
    assert code == 2 and len(err) == 1
    assert "--resume" not in err[0] and "incomplete" in err[0], err[0]
    assert "--overwrite deletes checkpoint-8, checkpoint-4" in err[0], err[0]
    # With a complete one, --resume is the advice, and --overwrite still says what it deletes.
    _checkpoint(out, 2)
    code, err = _cli(tmp_path, capsys, "--output-dir", str(out))
    assert code == 2 and "pass --resume" in err[0]
    assert "--overwrite deletes checkpoint-8, checkpoint-4, checkpoint-2" in err[0], err[0]
