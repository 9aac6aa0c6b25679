"""The directory lock and whole-or-nothing publishing, with real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from rundir import DirectoryLock, LockedError, staged
from rundir.lock import lock_path
from rundir.publish import leftovers

HOLD = """
import sys, time
from rundir import DirectoryLock
with DirectoryLock(sys.argv[1], what="test run"):
    print("held", flush=True)
    time.sleep(60)
"""


def _holder(directory):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(directory)], stdout=subprocess.PIPE,
                            text=True, cwd=os.getcwd(), env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_is_refused_naming_the_holder(tmp_path):
    out = tmp_path / "run"
    proc = _holder(out)
    try:
        with pytest.raises(LockedError, match=rf"in use by another finetune run \(pid {proc.pid} on "):
            DirectoryLock(out, what="finetune run").acquire()
    finally:
        proc.kill()
        proc.wait()


def test_a_killed_holder_leaves_no_stuck_lock(tmp_path):
    out = tmp_path / "run"
    proc = _holder(out)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert lock_path(out).exists()  # the file stays, the kernel's lock does not
    with DirectoryLock(out) as lock:
        assert str(os.getpid()) in lock.path.read_text()
    assert not lock_path(out).exists()


def test_one_process_holding_two_directories(tmp_path):
    with DirectoryLock(tmp_path / "a"), DirectoryLock(tmp_path / "b"), pytest.raises(LockedError):
        # flock is per open file: a second claim from this very process is refused too
        DirectoryLock(tmp_path / "a").acquire()


def test_staged_publishes_whole_and_replaces_the_old_directory(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with staged(out) as stage:
        assert stage.parent == tmp_path and not any(stage.iterdir())
        (stage / "new.txt").write_text("new")
        assert (out / "old.txt").exists() and not (out / "new.txt").exists()
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert leftovers(out) == []


def test_a_failed_block_leaves_the_target_as_it_was(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(OSError, match="disk full"), staged(out) as stage:
        (stage / "half.onnx").write_bytes(b"x" * 10)
        raise OSError("disk full")
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]
    assert leftovers(out) == []


KILLED = """
import os, sys, time
from rundir import staged
with staged(sys.argv[1]) as stage:
    (stage / "model.onnx").write_bytes(b"half")
    print("writing", flush=True)
    time.sleep(60)
"""


def test_a_killed_run_leaves_only_a_hidden_partial_that_the_next_run_removes(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(out)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    assert [p.name for p in leftovers(out)] == [f".out.partial-{proc.pid}"]
    with staged(out) as stage:
        (stage / "model.onnx").write_bytes(b"whole")
    assert (out / "model.onnx").read_bytes() == b"whole" and leftovers(out) == []


def test_a_run_that_died_between_the_renames_gets_the_old_directory_back(tmp_path):
    out = tmp_path / "out"
    swapped = tmp_path / ".out.old-99999"
    swapped.mkdir()
    (swapped / "keep.txt").write_text("kept")
    with pytest.raises(RuntimeError), staged(out):
        assert (out / "keep.txt").read_text() == "kept"
        raise RuntimeError("stop before publishing")
    assert (out / "keep.txt").read_text() == "kept"


def test_disk_full_is_told_apart_from_other_failures(tmp_path):
    import errno

    from rundir import disk_full, disk_full_message

    assert disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert disk_full(Exception("No space left on device (os error 28)"))  # the tokenizers' save
    try:
        try:
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
        except OSError as inner:
            raise RuntimeError("export failed") from inner
    except RuntimeError as outer:
        assert disk_full(outer)
    assert not disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not disk_full(ValueError("bad config"))
    line = disk_full_message(tmp_path / "new" / "run", "the export")
    assert line.startswith(f"the disk is full: no space left on the device of {tmp_path} while "
                           f"writing the export into {tmp_path / 'new' / 'run'} (")
    assert "MB free there now" in line and "\n" not in line
