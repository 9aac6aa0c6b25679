"""The output and cache directories: checked before anything loads, never silently reused."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from finetune.cli import main, parse_args
from finetune.outdir import check_output_dir, last_complete_checkpoint
from tests.conftest import REPO_ROOT
from tests.finetune.conftest import train_argv

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


@pytest.mark.parametrize(("rank", "refused"), [(None, True), ("0", True), ("1", False)])
def test_a_locked_output_dir_is_refused_first_on_rank_0_only(tmp_path, capsys, monkeypatch,
                                                              rank, refused):
    """The lock is taken before the directory checks (a held lock, not the other run's
    checkpoints, is the reason given); under torchrun only rank 0 takes it."""
    from rundir import DirectoryLock

    started = []
    monkeypatch.setattr("finetune.cli.run", lambda cfg, log: started.append(cfg))
    if rank is None:
        monkeypatch.delenv("RANK", raising=False)
    else:
        monkeypatch.setenv("RANK", rank)
    out = tmp_path / "out"
    _checkpoint(out, 4)  # the running run's checkpoint
    data = tmp_path / "data.txt"
    data.write_text("one abstract\n")
    with DirectoryLock(out, what="finetune run"):
        code = main(["--data", str(data), "--output-dir", str(out), "--resume"])
    err = capsys.readouterr().err.strip().splitlines()
    if refused:
        assert code == 2 and len(err) == 1 and not started, err
        assert "is in use by another finetune run" in err[0] and str(os.getpid()) in err[0]
    else:
        assert code == 0 and len(started) == 1, err


@pytest.mark.slow
def test_a_second_finetune_into_one_output_dir_is_refused_at_once(tmp_path, release_dir,
                                                                  tiny_tokenizer_dir, scratch_json):
    """Two real `python -m finetune` processes: the second exits 2 with one line while the
    first keeps running; once the first is killed (-9), nothing stays locked."""
    from rundir import DirectoryLock

    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    env.pop("RANK", None)

    def argv(seed):
        return [sys.executable, "-m", "finetune", *train_argv(
            release_dir, out, tiny_tokenizer_dir, scratch_json, tmp_path / "cache",
            "--max-steps", "100000", "--eval-steps", "100000", "--seed", str(seed))]

    first = subprocess.Popen(argv(1), cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not (out / "finetune_config.json").is_file():  # well into its work
            assert first.poll() is None and time.monotonic() < deadline, "first run did not start"
            time.sleep(0.2)
        second = subprocess.run(argv(2), cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                                timeout=120)
        assert first.poll() is None
    finally:
        first.kill()
        first.wait()
    err = second.stderr.strip().splitlines()
    assert second.returncode == 2 and len(err) == 1, second.stderr[-2000:]
    assert err[0].startswith(f"error: {out} is in use by another finetune run (pid {first.pid} ")
    assert json.loads((out / "finetune_config.json").read_text())["seed"] == 1
    with DirectoryLock(out, what="finetune run"):  # the killed run left no stuck lock
        pass
