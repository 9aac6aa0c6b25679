"""Find and read a model's files: the ONNX file, tokenizer.json, config.json, generation_config.json.

A model is an export directory, a directory (or Hub repo) whose ONNX files sit in `onnx/`, or
a Hub repo id, which is fetched with `snapshot_download` (only the files needed).

Where `decode.json` sits beside the ONNX files (`python -m export` writes it), the engine runs
a decode graph (`decode_fp32.onnx`, `decode_int8.onnx`, `decode_int4.onnx`: whichever passed
the export's gate; `decode.json` names them and the default, the fastest). Without it (a repo
exported by optimum alone) it runs optimum's `model.onnx` / `model_int8.onnx`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .configs import ModelFileError, read_json
from .contract import DECODE_FORMAT, DECODE_JSON, OPTIMUM_FILES, PRECISIONS

# Without a choice: the quantized file when it exists (smaller and faster on a CPU).
_DEFAULT_ORDER = ("int8", "fp32", "int4")


@dataclass(frozen=True)
class ModelFiles:
    """Where the pieces of one model are on disk.

    Attributes:
        root: the directory given (or the downloaded snapshot).
        onnx: the chosen ONNX file.
        precision: "fp32", "int8" or "int4".
        meta_dir: the directory holding config.json and tokenizer.json.
        decode: decode.json's content when `onnx` is a decode graph, else None.
    """

    root: Path
    onnx: Path
    precision: str
    meta_dir: Path
    decode: dict | None = None


def choose_onnx(files: list[str], precision: str | None) -> tuple[str, str]:
    """Pick the ONNX file among a model's files (relative POSIX paths).

    Args:
        files: every file of the model directory or repo.
        precision: "fp32", "int8", "int4", or None for int8 when present, else fp32.

    Returns:
        (relative path of the ONNX file, its precision).

    Raises:
        ValueError: the precision is unknown, or no matching ONNX file exists.
    """
    if precision is not None and precision not in OPTIMUM_FILES:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    names = set(files)
    folder = "" if any("/" not in f and f.endswith(".onnx") for f in names) else "onnx/"
    present = [p for p in PRECISIONS if folder + OPTIMUM_FILES[p] in names]
    wanted = [precision] if precision else list(_DEFAULT_ORDER)
    for p in wanted:
        if p in present:
            return folder + OPTIMUM_FILES[p], p
    found = ", ".join(f"{p} ({folder}{OPTIMUM_FILES[p]})" for p in present) or "none"
    want = f"{precision} model ({folder}{OPTIMUM_FILES[precision]})" if precision else "ONNX model"
    raise ValueError(f"no {want} found; available: {found}")


def choose_decode(meta: dict, precision: str | None) -> tuple[str, str]:
    """Pick a decode graph from decode.json's content.

    Args:
        meta: decode.json.
        precision: "fp32", "int8", "int4", or None for decode.json's default.

    Returns:
        (file name relative to decode.json, its precision).

    Raises:
        ValueError: an unknown format or precision, or a precision the export did not write.
    """
    if meta.get("format") != DECODE_FORMAT:
        raise ValueError(f"decode.json has format {meta.get('format')!r}; this engine reads "
                         f"format {DECODE_FORMAT} (re-export with python -m export)")
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    files = meta.get("files") or {}
    if not isinstance(files, dict) or not all(isinstance(f, str) for f in files.values()):
        raise ModelFileError(f"decode.json's files must map precisions to file names, got {files!r}"[:300])
    chosen = precision or meta.get("default")
    if chosen not in files:
        found = ", ".join(f"{p} ({f})" for p, f in files.items()) or "none"
        raise ValueError(f"no {chosen} decode graph in decode.json; available: {found}")
    return files[chosen], chosen


def choose_model_file(files: list[str], precision: str | None, use_decode: bool,
                      read_json) -> tuple[str, str, dict | None]:
    """The ONNX file to run: the decode graph where decode.json exists (and `use_decode`),
    else optimum's file (`choose_onnx`).

    Args:
        files: every file of the model directory or repo (relative POSIX paths).
        precision: see `choose_decode` and `choose_onnx`.
        use_decode: False to run optimum's graph even where a decode graph exists (CUDA).
        read_json: reads a file of `files` as JSON.

    Returns:
        (relative path of the ONNX file, its precision, decode.json or None).
    """
    names = set(files)
    folder = next((f for f in ("", "onnx/") if f + DECODE_JSON in names), None)
    if folder is None:
        return (*choose_onnx(files, precision), None)
    if not use_decode:
        try:
            return (*choose_onnx(files, precision), None)
        except ValueError as error:
            raise ValueError(f"{error} (the decode graph runs on the CPU only; CUDA needs "
                             "optimum's model.onnx)") from None
    meta = read_json(folder + DECODE_JSON)
    rel, chosen = choose_decode(meta, precision)
    if folder + rel not in names:
        raise ValueError(f"decode.json names {rel}, which is missing beside it")
    return folder + rel, chosen, meta


def resolve(model: str | os.PathLike, precision: str | None = None,
            use_decode: bool = True) -> ModelFiles:
    """Locate (downloading when `model` is a Hub id) the files of a model.

    Args:
        model: a local directory, or a Hub repo id such as "user/model".
        precision: see `choose_model_file`.
        use_decode: see `choose_model_file`.

    Returns:
        The located files.

    Raises:
        ValueError: no such directory or repo, or no usable ONNX file in it.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return _local(path, precision, use_decode)
    if path.exists() or str(model).count("/") != 1 or str(model).startswith((".", "/", "~")):
        raise ValueError(f"model {str(model)!r} is neither a model directory nor a Hub repo id")
    return _download(str(model), precision, use_decode)


def _local(root: Path, precision: str | None, use_decode: bool) -> ModelFiles:
    files = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
    rel, chosen, meta = choose_model_file(files, precision, use_decode,
                                          lambda rel: read_json(root / rel))
    return _files(root, rel, chosen, meta)


def _download(repo_id: str, precision: str | None, use_decode: bool) -> ModelFiles:
    """Fetch only the needed files of a Hub repo; offline (or with the Hub unreachable), use
    the files a previous download left in the local cache."""
    from huggingface_hub import HfApi, snapshot_download

    try:
        files = [s.rfilename for s in HfApi().model_info(repo_id).siblings or []]
        # First the JSON files (config, tokenizer, decode.json: small), which say which ONNX
        # file to take; then that file and its external data (never the PyTorch weights).
        root = Path(snapshot_download(repo_id, allow_patterns=["*.json"]))
        rel, chosen, meta = choose_model_file(files, precision, use_decode,
                                              lambda rel: read_json(root / rel))
        root = Path(snapshot_download(repo_id, allow_patterns=[rel, rel + "_data", rel + ".data"]))
    except OSError as error:  # HTTP errors, no network, offline mode (all OSErrors)
        try:
            root = Path(snapshot_download(repo_id, local_files_only=True))
        except OSError:
            raise ValueError(f"could not fetch {repo_id!r} from the Hub: {error}") from error
        return _local(root, precision, use_decode)
    return _files(root, rel, chosen, meta)


def _files(root: Path, rel: str, precision: str, decode: dict | None) -> ModelFiles:
    onnx = root / rel
    meta_dir = onnx.parent if (onnx.parent / "tokenizer.json").is_file() else root
    for name in ("tokenizer.json", "config.json"):
        if not (meta_dir / name).is_file():
            raise ModelFileError(f"{name} is missing beside {onnx} (looked in {meta_dir})")
    return ModelFiles(root=root, onnx=onnx, precision=precision, meta_dir=meta_dir, decode=decode)
