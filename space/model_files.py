"""`--embed-model`: exactly the files the engine loads, and only from inside the model directory.

The engine loads one ONNX graph (decode.json's default, else optimum's int8 or fp32 file), the
external-data files that graph names, config.json, tokenizer.json and generation_config.json.
Nothing else of the model directory is bundled. A symlink is followed only where it stays in
the model directory or in the same Hugging Face cache repo's `blobs/` (a `huggingface_hub`
snapshot is all symlinks into `../../blobs/`): a link to /etc/passwd is never uploaded.
"""

from __future__ import annotations

import json
from pathlib import Path

from generation.contract import DECODE_JSON
from generation.files import choose_model_file
from space.errors import UserError

# Without a decode graph (decode.json), the engine's default: int8 when present, else fp32.
ONNX_PREFERENCE = ("model_int8.onnx", "model.onnx")
ENGINE_FILES = ("config.json", "tokenizer.json")
OPTIONAL_ENGINE_FILES = ("generation_config.json",)  # the engine's sampling defaults
COPY_CHUNK = 1 << 20


def find_onnx_dir(model_dir: Path) -> Path | None:
    """The folder holding the ONNX files: the dir itself (export layout) or its `onnx/`."""
    for candidate in (model_dir, model_dir / "onnx"):
        if (candidate / DECODE_JSON).is_file() or any(
                (candidate / name).is_file() for name in ONNX_PREFERENCE):
            return candidate
    return None


def engine_files(model_dir: Path) -> list[Path]:
    """The files the engine needs to serve `model_dir`, at its default precision.

    Args:
        model_dir: an export dir, or a model repo with its ONNX files in `onnx/`.

    Returns:
        The ONNX file the engine would load (the decode graph named by decode.json's default,
        with decode.json, where the export has one; else optimum's int8 or fp32 file), the
        external-data files that graph names, config.json, tokenizer.json and, when present,
        generation_config.json; each checked by `check_inside`.

    Raises:
        UserError: no ONNX file, a required config/tokenizer file is missing, the graph is not
            ONNX or names missing external data, or a file leads out of the model directory.
    """
    onnx_dir = find_onnx_dir(model_dir)
    if onnx_dir is None:
        raise UserError(f"{model_dir} holds no {DECODE_JSON} or {' or '.join(ONNX_PREFERENCE)} "
                        "(nor in onnx/): export it first with `python -m export`")
    names = [p.name for p in onnx_dir.iterdir() if p.is_file()]
    try:
        rel, _, meta = choose_model_file(
            names, None, True, lambda name: json.loads((onnx_dir / name).read_text()))
    except ValueError as err:
        raise UserError(f"{onnx_dir}: {err}") from None
    files = [onnx_dir / rel] + ([onnx_dir / DECODE_JSON] if meta is not None else [])
    missing = []
    for name in ENGINE_FILES + OPTIONAL_ENGINE_FILES:
        found = next((d / name for d in (onnx_dir, model_dir) if (d / name).is_file()), None)
        if found is not None:
            files.append(found)
        elif name in ENGINE_FILES:
            missing.append(name)
    if missing:
        raise UserError(f"{onnx_dir} lacks {', '.join(missing)}, which the engine needs")
    check_inside(model_dir, files)  # before the graph is parsed: never read what leads out
    data = [onnx_dir / loc for loc in external_data(onnx_dir / rel)]
    check_inside(model_dir, data)
    return files[:1] + data + files[1:]


def external_data(graph: Path) -> list[str]:
    """The external-data files `graph` names (ONNX Runtime loads them beside it), sorted.

    Raises:
        UserError: the graph is not ONNX, or names a file that is missing or not beside it.
    """
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(graph), load_external_data=False)
    except (DecodeError, ValueError, OSError) as err:
        raise UserError(f"{graph} is not a valid ONNX file ({err})") from None
    locations = {entry.value for tensor in _tensors(model.graph)
                 if tensor.data_location == onnx.TensorProto.EXTERNAL
                 for entry in tensor.external_data if entry.key == "location"}
    for location in sorted(locations):
        path = graph.parent / location
        if Path(location).name != location or not path.is_file():
            raise UserError(f"{graph} names external data {location!r}, which is not a file "
                            f"beside it in {graph.parent}")
    return sorted(locations)


def _tensors(graph):
    """Every tensor of a graph: initializers and node attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _tensors(sub)


def allowed_roots(model_dir: Path) -> list[Path]:
    """Where the model's files may really lie: the model directory and, when it sits in a
    huggingface_hub cache (`<repo>/snapshots/<rev>/...`), that repo's `blobs/`."""
    root = model_dir.resolve()
    roots = [root]
    for folder in (root, *root.parents):
        if folder.parent.name == "snapshots" and (folder.parent.parent / "blobs").is_dir():
            roots.append((folder.parent.parent / "blobs").resolve())
            break
    return roots


def check_inside(model_dir: Path, files: list[Path]) -> None:
    """Refuse any file whose real location (symlinks followed) is outside `allowed_roots`.

    Raises:
        UserError: naming the first such file and where it points.
    """
    roots = allowed_roots(model_dir)
    for path in files:
        real = path.resolve()
        if not any(real.is_relative_to(root) for root in roots):
            how = "is a symlink to" if path.is_symlink() else "resolves to"
            raise UserError(f"refusing to build: {path} {how} {real}, outside the model "
                            f"directory {model_dir} (a symlink is followed only within it or "
                            "into its Hub cache repo's blobs/)")


def copy_sparse(source: Path, target: Path) -> None:
    """Copy `source` (its real file) in chunks; runs of zeros become holes, as in the source
    of a sparse external-data file, so a 2 GiB file of mostly zeros costs no 2 GiB of disk."""
    zeros = bytes(COPY_CHUNK)
    with open(source.resolve(), "rb") as src, open(target, "wb") as dst:
        while chunk := src.read(COPY_CHUNK):
            if chunk == zeros[:len(chunk)]:
                dst.seek(len(chunk), 1)
            else:
                dst.write(chunk)
        dst.truncate()
