"""How big the bundle is, and how much its requirements take once installed."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path


def human(size: int) -> str:
    """A byte count as a short human string ("12.3 MiB")."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def tree_bytes(folder: Path) -> int:
    """The total size of the regular files under `folder` (what `du --apparent-size` counts)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def installed_bytes(requirements: Path, extra: list[str] | None = None) -> int:
    """Install `requirements` (plus `extra` specs) into an empty folder and measure it.

    Uses `pip install --target`, which installs every dependency afresh, ignoring what this
    Python already has, so the number is what a clean environment would receive. pip may
    reuse its cache and download from the package index.

    Args:
        requirements: a requirements.txt.
        extra: more requirement specs, e.g. ["gradio==6.17.3"].

    Returns:
        The installed size in bytes.

    Raises:
        RuntimeError: pip failed (its last output lines are in the message).
    """
    with tempfile.TemporaryDirectory(prefix="space-install-") as target:
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
               "--target", target, "-r", str(requirements), *(extra or [])]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-5:])
            raise RuntimeError(f"pip install --target failed:\n{tail}")
        return tree_bytes(Path(target))
