"""Publishing an export whole: built in a hidden staging directory, renamed into place only
after the gate passed.

The output directory therefore holds a whole, gated export, or what it held before: a run that
is killed, runs out of disk or fails its gate leaves it untouched (its work sat in
`.NAME.partial-PID` beside it, which no loader takes for a model and the next export into NAME
removes). A failed gate keeps only its report, `NAME.gate-failed.json` beside the directory: a
JSON file, which nothing loads as a model. With --overwrite the user's own files in the old
directory are carried into the new one (an earlier export's ONNX files, decode.json and report
are not), and the old directory is swapped out only then.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from export.pipeline import REPORT, STALE_PATTERNS, ExportOptions, ExportResult, export_model
from rundir import staged


class _GateFailed(Exception):
    """Leaves the staging block without publishing (the stage is removed)."""


def failed_report_path(target: Path) -> Path:
    """Where a failed gate's report goes: `NAME.gate-failed.json` beside the directory."""
    target = Path(target).absolute()
    return target.parent / f"{target.name}.gate-failed.json"


def export_staged(options: ExportOptions, log: Callable[[str], None] = print,
                  checkpoint: tuple | None = None) -> ExportResult:
    """`export_model` into a staging directory, published as `options.output_dir` only when
    the gate passed (or was skipped).

    Call it while holding `rundir.DirectoryLock(options.output_dir)`: two runs must not
    stage into one directory.

    Args:
        options: what to export; `output_dir` is where it is published.
        log: where progress lines go.
        checkpoint: `read_checkpoint(model_dir)` when the caller has it already.

    Returns:
        The ExportResult, its paths in the output directory; for a failed gate, `files` is
        empty and `report_path` is `failed_report_path(output_dir)`.
    """
    target = Path(options.output_dir)
    failed = failed_report_path(target)
    try:
        with staged(target) as stage:
            result = export_model(replace(options, output_dir=stage), log, checkpoint)
            if not result.passed:
                _write_json(failed, result.report)
                raise _GateFailed
            replaced = carry_over(target, stage)
    except _GateFailed:
        return ExportResult(target, {}, result.gate, result.report, failed)
    if replaced:
        log(f"[export] removed an earlier export's files from {target}: {', '.join(replaced)}")
    failed.unlink(missing_ok=True)  # an earlier failure's report would now mislead
    files = {p: target / f.name for p, f in result.files.items()}
    return ExportResult(target, files, result.gate, result.report, target / REPORT)


def carry_over(old: Path, new: Path) -> list[str]:
    """Link (or copy) into `new` what `old` holds that `new` lacks, except an earlier export's
    files (`STALE_PATTERNS`). `old` is not changed.

    Args:
        old: the directory being replaced (it may not exist).
        new: the staged export.

    Returns:
        The names of the earlier export's files left behind.
    """
    if not old.is_dir():
        return []
    stale = {p.name for pattern in STALE_PATTERNS for p in old.glob(pattern) if p.is_file()}
    for item in sorted(old.iterdir()):
        if item.name in stale or (new / item.name).exists() or (new / item.name).is_symlink():
            continue
        if item.is_dir() and not item.is_symlink():
            shutil.copytree(item, new / item.name, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(item, new / item.name)
    return sorted(stale)


def _link_or_copy(src, dst) -> None:
    # A hard link costs no space and the export never writes these files again. A link made
    # here stays a link (it may point anywhere, as it did in the old directory).
    if os.path.islink(src):
        os.symlink(os.readlink(src), dst)
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _write_json(path: Path, value: dict) -> None:
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    partial.write_text(json.dumps(value, indent=2) + "\n")
    partial.replace(path)
