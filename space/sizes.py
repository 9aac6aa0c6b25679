"""How big the bundle is, whether the Hub and a Space take it, and how much its requirements
take once installed."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from space.errors import UserError

# The Hub refuses a single file over 50 GB ("Per file: 50GB max, 20GB recommended",
# https://huggingface.co/docs/hub/storage-limits; files over 10 MB go through LFS/Xet, which
# upload_folder does by itself). A free Space runs on 50 GB of ephemeral disk, which the repo
# must fit in (https://huggingface.co/docs/hub/spaces-storage). The Hub documents no repo size
# for Spaces, but Space repos of about 1 GB are widely reported to be where uploads and builds
# start failing (e.g. "Hugging Face Spaces have a 1GB storage limit for uploaded files",
# huggingface.co/spaces/ibagur/cfm_topic_classifier/HF_DOWNLOAD_STRATEGY.md): warn there.
HUB_FILE_LIMIT = 50 * 10**9
SPACE_DISK_LIMIT = 50 * 10**9
SPACE_SOFT_LIMIT = 1 * 2**30


def human(size: int) -> str:
    """A byte count as a short human string ("12.3 MiB")."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def gb(size: int) -> str:
    """A byte count in decimal GB, as the Hub's limits are written ("51.0 GB")."""
    return f"{size / 1e9:.1f} GB"


def check_limits(files: list[tuple[str, int]]) -> list[str]:
    """Refuse a bundle the Hub or a free Space cannot take; warn about one that is too big.

    Args:
        files: (path in the bundle, size in bytes) of every file.

    Returns:
        Warning lines (empty when the bundle is comfortably small).

    Raises:
        UserError: a file over the Hub's per-file limit, or a bundle over a Space's disk.
    """
    over = [(rel, size) for rel, size in files if size > HUB_FILE_LIMIT]
    if over:
        rel, size = over[0]
        raise UserError(f"refusing to build: {rel} is {gb(size)}, over the Hub's "
                        f"{gb(HUB_FILE_LIMIT)} per-file limit")
    total = sum(size for _, size in files)
    if total > SPACE_DISK_LIMIT:
        raise UserError(f"refusing to build: the bundle is {gb(total)}, over the "
                        f"{gb(SPACE_DISK_LIMIT)} disk of a Space")
    if total > SPACE_SOFT_LIMIT:
        return [f"the bundle is {human(total)}, over the {human(SPACE_SOFT_LIMIT)} soft limit "
                "at which Space uploads and builds are reported to fail: push the model to a "
                "model repo and deploy without --embed-model"]
    return []


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
