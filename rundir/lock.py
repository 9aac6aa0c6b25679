"""One run per output directory: an advisory lock that a crashed run cannot leave stuck.

The lock is `flock` on a sibling file `.<name>.lock` (beside the directory, so the directory
itself can be swapped whole). The kernel drops a flock when its process ends, however it ends
(kill -9 included), so a lock whose process is gone is simply taken over; the pid, host and
start time written into the file only make the refusal say who holds it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: no lock (documented in the README)
    fcntl = None


class LockedError(RuntimeError):
    """Another live process holds the directory's lock."""


def lock_path(directory: Path) -> Path:
    """The lock file of `directory`: `.<name>.lock` beside it."""
    directory = Path(directory).absolute()
    return directory.parent / f".{directory.name}.lock"


class DirectoryLock:
    """An exclusive claim on `directory` for the life of this object (or a `with` block).

    Args:
        directory: the run's output directory (it need not exist yet; its parent is created).
        what: how the refusal names the holder's kind of run ("finetune run", "export").

    Raises:
        LockedError: (on acquire) a live process holds it; the message names its pid, host and
            start time and the directory.
    """

    def __init__(self, directory: str | os.PathLike, what: str = "run"):
        self.directory = Path(directory)
        self.path = lock_path(self.directory)
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> DirectoryLock:
        """Take the lock (at once, or raise LockedError)."""
        if fcntl is None or self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise LockedError(
                    f"{self.directory} is in use by another {self.what} ({holder}); wait for it to "
                    "end or stop it (a run that died leaves no lock behind)") from None
            # The file we locked may have been unlinked by a holder that just released it:
            # only a lock on the file now at `path` counts.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%d %H:%M:%S"), "directory": str(self.directory)}
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(record) + "\n").encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the lock up and remove its file."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still held: nobody can lock this inode
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        record = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        record = {}
    if not record.get("pid"):
        return "a process that is starting"
    return f"pid {record['pid']} on {record.get('host', '?')}, started {record.get('started', '?')}"
