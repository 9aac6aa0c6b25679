"""The output and cache directories: usable paths, no silent reuse, complete checkpoints.

Checked before anything is loaded, so a bad path costs the user seconds, not a data
download and a tokenization.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from finetune.config import ConfigError, FinetuneConfig

# The files a run writes into --output-dir when it finishes: a directory holding any of them
# (an earlier run, an export, a project folder with a README.md) is never written over
# without --overwrite.
END_FILES = ("model.safetensors", "pytorch_model.bin", "config.json", "generation_config.json",
             "metrics.json", "README.md", "loss.png", "trainer_state.json", "training_args.bin",
             "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
             "merges.txt")
# Written when a run starts; a run that failed early leaves them, which must not block a rerun.
START_FILES = ("finetune_config.json", "baseline_metrics.json")
# Trainer writes these into every checkpoint, trainer_state.json last: a checkpoint that
# lacks one (or whose state does not parse) was cut short, e.g. by `kill -9`.
CHECKPOINT_FILES = ("model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json")
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# The finished model is written here first (hidden: no loader looks inside) and its files are
# moved into --output-dir only once all of them are written, config.json last.
FINAL_STAGE = ".final.partial"


def path_issues(cfg: FinetuneConfig) -> list[str]:
    """Why --output-dir or --cache-dir cannot be used (empty when both can)."""
    issues = []
    for flag, value in (("--output-dir", cfg.output_dir), ("--cache-dir", cfg.cache_dir)):
        if problem := _unusable_dir(Path(value).expanduser()):
            issues.append(f"{flag} {value}: {problem}")
    return issues


def _unusable_dir(path: Path) -> str | None:
    """Why `path` cannot be (created as) a writable directory, or None."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    try:  # os.access says yes to root even on read-only or virtual file systems
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        return f"cannot write in {existing} ({err.strerror or err})"
    return None


def checkpoints(out: Path) -> list[Path]:
    """The `checkpoint-N` folders of `out`, highest step first."""
    if not out.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in out.iterdir()
             if p.is_dir() and (m := _CHECKPOINT.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def is_complete(checkpoint: Path) -> bool:
    """Whether Trainer finished writing `checkpoint` (all its files, a parsable state)."""
    if not all((checkpoint / name).is_file() for name in CHECKPOINT_FILES):
        return False
    try:
        json.loads((checkpoint / "trainer_state.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return True


def last_complete_checkpoint(out: str | Path) -> tuple[Path | None, list[Path]]:
    """The newest complete checkpoint of a run directory, and the newer incomplete ones.

    Returns:
        (checkpoint or None, incomplete checkpoints above it, highest step first).
    """
    skipped = []
    for path in checkpoints(Path(out)):
        if is_complete(path):
            return path, skipped
        skipped.append(path)
    return None, skipped


def earlier_run_files(out: Path) -> list[Path]:
    """What --overwrite deletes in `out`: checkpoints, an earlier run's result files and the
    staging folder of a run killed while saving its model."""
    return checkpoints(out) + [out / name for name in END_FILES + START_FILES
                               if (out / name).is_file()] + [
        p for p in [out / FINAL_STAGE] if p.is_dir()]


def final_stage(out: Path) -> Path:
    """An empty staging folder for the finished model (a killed run's leftover is removed)."""
    stage = Path(out) / FINAL_STAGE
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    return stage


def publish_final(stage: Path, out: Path) -> None:
    """Move every file of `stage` into `out`, then remove `stage`.

    config.json goes first out of `out` and last into it: whenever `out` has a config.json,
    every final file beside it is this run's (a loader needs config.json to take the folder
    for a model). Renames within one file system: nothing is copied, no space is needed.
    """
    (out / "config.json").unlink(missing_ok=True)
    files = sorted(stage.iterdir(), key=lambda p: (p.name == "config.json", p.name))
    for path in files:
        os.replace(path, out / path.name)
    stage.rmdir()


def write_json_atomic(path: Path, value) -> None:
    """Write JSON through a temporary sibling, so a full disk never leaves half a file."""
    tmp = path.with_name(f".{path.name}.part")
    try:
        tmp.write_text(json.dumps(value, indent=2) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _deleted_by_overwrite(out: Path, most: int = 6) -> str:
    """"--overwrite deletes checkpoint-8, metrics.json and 3 more" for the error messages."""
    names = [p.name for p in earlier_run_files(out)]
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return "--overwrite deletes " + ", ".join(names[:most]) + more


def check_output_dir(cfg: FinetuneConfig) -> None:
    """--resume needs a complete checkpoint; a fresh run must not reuse an earlier one's dir.

    Raises:
        ConfigError: the output directory does not fit the options; the message says what
            --overwrite would delete.
    """
    out = Path(cfg.output_dir)
    found = checkpoints(out)
    if cfg.resume:
        last, skipped = last_complete_checkpoint(out)
        if last is None:
            incomplete = (f" ({', '.join(p.name for p in skipped)} is incomplete: a run cut short "
                          "while saving it)") if skipped else ""
            deletes = f" ({_deleted_by_overwrite(out)})" if earlier_run_files(out) else ""
            start = f"; pass --overwrite instead of --resume to start afresh{deletes}"
            raise ConfigError(f"--resume: no complete checkpoint-* directory in {out}"
                              f"{incomplete}, so there is nothing to resume{start}")
        return
    if cfg.overwrite:
        return
    if found:
        complete = last_complete_checkpoint(out)[0]
        advice = (f"pass --resume to continue that run from {complete.name}, or --overwrite to "
                  "start afresh" if complete else "none is complete (a run cut short while "
                  "saving), so there is nothing to resume: pass --overwrite to start afresh")
        raise ConfigError(f"{out} already holds checkpoints ({found[0].name}"
                          f"{'' if complete else ', incomplete'}): {advice} "
                          f"({_deleted_by_overwrite(out)}), or choose another --output-dir")
    present = [name for name in END_FILES if (out / name).exists()]
    if present:
        raise ConfigError(f"{out} already holds a model or files this run would replace "
                          f"({', '.join(present)}): pass --overwrite to replace them, or choose "
                          "another --output-dir")


def clear_earlier_run(cfg: FinetuneConfig, log: Callable[[str], None]) -> None:
    """With --overwrite, delete the earlier run's checkpoints and result files.

    A stale checkpoint-N would otherwise be what a later --resume picks up, and a stale
    model.safetensors would look like this run's result if this run fails.
    """
    if not cfg.overwrite:
        return
    stale = earlier_run_files(Path(cfg.output_dir))
    for path in stale:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    if stale:
        log(f"finetune: --overwrite: deleted {len(stale)} files and checkpoints of the earlier run")
