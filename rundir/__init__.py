"""A directory that one run writes: an exclusive lock on it, and publishing it whole.

    with DirectoryLock(out), staged(out) as tmp:
        ...write everything into tmp...
    # out now holds exactly what was written, or (after a failure or a kill) what it held before

`finetune` and `export` both use it; it imports nothing of the project. `disk_full(err)` tells
a full disk from other failures (an OSError ENOSPC, or a library's own wording of it) and
`disk_full_message(target)` says so in one line.
"""

from .disk import disk_full, disk_full_message
from .lock import DirectoryLock, LockedError
from .publish import staged

__all__ = ["DirectoryLock", "LockedError", "disk_full", "disk_full_message", "staged"]
