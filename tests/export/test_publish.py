"""An export appears whole or not at all: killed, refused, out of disk or failing its gate, the
output directory is what it was before (real `python -m export` processes where it matters)."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from export.cli import main
from tests.conftest import REPO_ROOT

FAST = ["--quantize", "none", "--int4-block-size", "16", "--int8-block-size", "16"]


def start_export(model: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), HF_HUB_OFFLINE="1")
    return subprocess.Popen([sys.executable, "-m", "export", "--model", str(model), "--output-dir",
                             str(out), *FAST, *extra], cwd=REPO_ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_until_writing(proc: subprocess.Popen, out: Path, since: float, timeout: float = 240) -> None:
    """Until the export has written a new model.onnx (in its staging directory or in `out`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [*out.parent.glob(f".{out.name}.partial-*/model.onnx"), out / "model.onnx"]
        if any(p.is_file() and p.stat().st_mtime > since for p in found):
            return
        if proc.poll() is not None:
            pytest.fail(f"the export ended before writing model.onnx: {proc.communicate()}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail("the export wrote no model.onnx in time")


def snapshot(directory: Path) -> dict[str, str]:
    """Every file under `directory` (relative name → sha256)."""
    return {p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def test_a_killed_export_leaves_no_directory_and_the_next_run_publishes(tmp_path, tiny_model_dir):
    from generation import Engine

    out = tmp_path / "onnx"
    proc = start_export(tiny_model_dir, out)
    wait_until_writing(proc, out, since=0)
    kill(proc)
    assert not out.exists()
    with pytest.raises(ValueError):
        Engine.load(out)
    # The dead run's staging directory is hidden, and the next export into `out` removes it.
    assert main(["--model", str(tiny_model_dir), "--output-dir", str(out), *FAST]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["onnx"]
    Engine.load(out).score("We propose")


def test_a_killed_overwrite_leaves_the_old_export_intact(tmp_path, tiny_model_dir, exported):
    from generation import Engine

    _, earlier = exported
    out = tmp_path / "onnx"
    shutil.copytree(earlier, out)
    before = snapshot(out)
    proc = start_export(tiny_model_dir, out, "--overwrite")
    wait_until_writing(proc, out, since=max(p.stat().st_mtime for p in out.iterdir()))
    kill(proc)
    assert snapshot(out) == before
    score = Engine.load(out).score("We propose")
    assert score.logprobs.tolist() == Engine.load(earlier).score("We propose").logprobs.tolist()


def test_a_second_export_into_the_same_directory_is_refused_at_once(tmp_path, tiny_model_dir):
    out = tmp_path / "onnx"
    first = start_export(tiny_model_dir, out)
    try:
        wait_until_writing(first, out, since=0)
        os.kill(first.pid, signal.SIGSTOP)  # holds the directory, makes no progress
        second = start_export(tiny_model_dir, out)
        stdout, stderr = second.communicate(timeout=120)
        assert second.returncode == 2, (stdout, stderr)
        assert len(stderr.strip().splitlines()) == 1, stderr
        assert f"in use by another export (pid {first.pid} on " in stderr
        assert "onnx export" not in stdout  # refused before any work
    finally:
        kill(first)


def test_a_failed_gate_with_overwrite_leaves_the_old_export_intact(tmp_path, tiny_model_dir, exported,
                                                                    monkeypatch, capsys):
    import export.pipeline as pipeline
    from tests.export.test_gate import perturb_initializer

    _, earlier = exported
    out = tmp_path / "onnx"
    shutil.copytree(earlier, out)
    before = snapshot(out)
    real_export = pipeline.export_fp32

    def altered_export(model_dir, target, device="cpu"):
        perturb_initializer(real_export(model_dir, target, device))
        return target / "model.onnx"

    monkeypatch.setattr(pipeline, "export_fp32", altered_export)
    assert main(["--model", str(tiny_model_dir), "--output-dir", str(out), "--overwrite", *FAST]) == 1
    assert "FAIL fp32 logits short b1 prefill" in capsys.readouterr().err
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["onnx", "onnx.gate-failed.json"]


def _full_disk(path, *args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device", str(path))


def _tokenizer_full_disk(*args, **kwargs):
    raise Exception("No space left on device (os error 28)")  # what the tokenizers' save raises


@pytest.mark.parametrize("where", ["onnx.save", "tokenizer save"])
def test_a_full_disk_is_one_line_and_leaves_nothing(where, tmp_path, tiny_model_dir, monkeypatch,
                                                    capsys):
    import onnx
    import tokenizers

    if where == "onnx.save":
        monkeypatch.setattr(onnx, "save", _full_disk)
    else:
        monkeypatch.setattr(tokenizers.Tokenizer, "save", _tokenizer_full_disk)
    out = tmp_path / "onnx"
    assert main(["--model", str(tiny_model_dir), "--output-dir", str(out), *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the disk is full") and len(err.splitlines()) == 1, err
    assert str(out) in err
    assert list(tmp_path.iterdir()) == []


@pytest.fixture()
def small_tmpfs(tmp_path, request):
    """A tmpfs of `request.param` bytes mounted at tmp_path/disk (skips where mounting is not
    permitted)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={request.param}", "tmpfs", str(disk)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


# 200 kB fills up inside optimum's model.onnx; 600 kB among the decode graphs.
@pytest.mark.parametrize("small_tmpfs", [200_000, 600_000], indirect=True)
def test_a_real_full_disk_is_one_line_and_leaves_nothing(small_tmpfs, tiny_model_dir, capsys):
    out = small_tmpfs / "onnx"
    assert main(["--model", str(tiny_model_dir), "--output-dir", str(out), *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the disk is full") and len(err.splitlines()) == 1, err
    assert list(small_tmpfs.iterdir()) == []


def test_an_export_published_after_the_options_were_checked_is_not_replaced(
        tmp_path, tiny_model_dir, monkeypatch, capsys):
    import export.cli as cli

    out = tmp_path / "onnx"
    out.mkdir()
    (out / "model.onnx").write_text("another run's export, published while we started")
    monkeypatch.setattr(cli, "validate_options", lambda args: [])  # it saw no directory yet
    assert main(["--model", str(tiny_model_dir), "--output-dir", str(out), *FAST]) == 2
    assert "exists and is not empty (pass --overwrite)" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["model.onnx"]
