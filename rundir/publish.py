"""Publish a directory whole or not at all: write into a hidden sibling, rename it into place.

A run killed at any moment (kill -9, a full disk, an exception) leaves the target as it was:
its work sits in `.<name>.partial-<pid>`, which no loader takes for a model, and the next run
into the same target removes it. Only after the caller's block succeeded is the old target
swapped out (`.<name>.old-<pid>`) and the new one renamed in: two renames within one parent,
so on one filesystem each is atomic.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def leftovers(target: Path) -> list[Path]:
    """Earlier runs' staging and swapped-out directories of `target`."""
    target = Path(target).absolute()
    return sorted(p for pattern in (f".{target.name}.partial-*", f".{target.name}.old-*")
                  for p in target.parent.glob(pattern) if p.is_dir())


@contextmanager
def staged(target: str | os.PathLike) -> Iterator[Path]:
    """An empty staging directory that replaces `target` when the block ends without error.

    Call it while holding `DirectoryLock(target)`: leftovers of earlier runs into `target`
    are then dead runs' and are removed first (a swapped-out copy is put back if the run died
    between the two renames).

    Args:
        target: the directory to publish (it may exist; whether replacing it is allowed is the
            caller's check, made before any work).

    Yields:
        The staging directory, beside `target` on the same filesystem.
    """
    target = Path(target).absolute()
    for old in leftovers(target):
        if ".old-" in old.name and not target.exists():
            old.rename(target)  # died between the two renames: the previous target returns
        else:
            shutil.rmtree(old, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = target.parent / f".{target.name}.partial-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    swapped = None
    if target.exists() or target.is_symlink():
        swapped = target.parent / f".{target.name}.old-{os.getpid()}"
        target.rename(swapped)
    stage.rename(target)
    if swapped is not None:
        if swapped.is_dir() and not swapped.is_symlink():
            shutil.rmtree(swapped, ignore_errors=True)
        else:
            swapped.unlink()
