"""Telling a full disk apart from other failures, and saying so in one line."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path


def disk_full(err: BaseException | None) -> bool:
    """Whether `err` (or what caused it) is a full disk: OSError ENOSPC / EDQUOT, or a library's
    own wording of it (the tokenizers' save raises `Exception: No space left on device`)."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False


def disk_full_message(target: str | Path, what: str = "the run") -> str:
    """One line for a full disk while writing `target`: where, and how much is free there now."""
    target = Path(target).absolute()
    parent = next((p for p in (target, *target.parents) if p.exists()), Path(target.anchor))
    free = shutil.disk_usage(parent).free / 1e6
    return (f"the disk is full: no space left on the device of {parent} while writing {what} "
            f"into {target} ({free:.1f} MB free there now)")
