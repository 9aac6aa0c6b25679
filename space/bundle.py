"""Build a complete Hugging Face Space repository from an explicit allow-list of files.

Nothing is copied by walking the working directory: the bundle is `README.md` (written
here), `app.py`, the `*.py` files of `generation/` and `demo/` that are imported, `requirements.txt`
(written here) and, with `embed_model`, the few files the engine loads. Caches, checkpoints,
`.env` files and anything else beside them never reach it, and a bundle in which any file
holds a Hugging Face token is refused.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from space.card import DEFAULT_TITLE, PLACEHOLDER_SPACE_ID, CardInfo, render_card
from space.errors import UserError
from space.model_files import ENGINE_FILES, OPTIONAL_ENGINE_FILES, copy_sparse, engine_files
from space.sizes import check_limits
from space.source import check_imports, code_files, with_default_model
from space.tokens import holds_token

__all__ = ["ENGINE_FILES", "OPTIONAL_ENGINE_FILES", "Bundle", "BundleOptions", "build_bundle"]

REPO_ROOT = Path(__file__).resolve().parent.parent
EMBED_DIR = "model"
# Distribution names whose installed versions pin the Space's requirements.txt.
RUNTIME_PACKAGES = ("tokenizers", "numpy", "huggingface_hub")
ONNXRUNTIME_DISTS = ("onnxruntime", "onnxruntime-gpu")


@dataclass
class BundleOptions:
    """What to build; each field is a `python -m space build` option."""

    model: str = field(metadata={"help": "Hub model id the Space downloads, or a local model "
                                         "dir (export dir or repo with onnx/) with embed_model"})
    output_dir: Path = field(metadata={"help": "new or empty folder for the Space repository"})
    embed_model: bool = field(default=False, metadata={
        "help": "copy the model's engine files into model/ instead of downloading at start"})
    gpu: bool = field(default=False, metadata={
        "help": "onnxruntime-gpu (with its CUDA wheels) and a GPU hardware suggestion"})
    title: str = field(default=DEFAULT_TITLE, metadata={"help": "the Space's display title"})
    space_id: str = field(default=PLACEHOLDER_SPACE_ID, metadata={
        "help": "USER/NAME shown in the README's gradio_client snippet"})
    source_root: Path = field(default=REPO_ROOT, metadata={
        "help": "checkout holding app.py and generation/"})
    command: str = field(default="", metadata={"help": "command line recorded in the README"})


@dataclass(frozen=True)
class Bundle:
    """A built Space repository: its folder, every file in it with its size in bytes, and
    what the user should know about it (e.g. over a Space's soft size limit)."""

    path: Path
    files: list[tuple[str, int]]
    warnings: tuple[str, ...] = ()

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self.files)


def is_local_model(model: str) -> bool:
    """Whether `model` names an existing local directory (else it is taken as a Hub id)."""
    return bool(model) and Path(model).expanduser().is_dir()


def repo_id_problem(repo_id: str, *, need_namespace: bool) -> str | None:
    """Why `repo_id` is not a valid Hub repository id, or None when it is.

    Args:
        repo_id: the id to check, e.g. "user/name".
        need_namespace: require the "USER/NAME" form (Spaces always have an owner).

    Returns:
        A short reason, or None.
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if need_namespace and repo_id.count("/") != 1:
        return f"{repo_id!r} is not of the form USER/NAME"
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        return str(err)
    return None


def runtime_requirements(gpu: bool) -> list[str]:
    """`requirements.txt` lines: the engine's runtime, pinned to the versions installed here.

    Gradio is not listed: the Space installs it from `sdk_version`.

    Args:
        gpu: use onnxruntime-gpu (with the CUDA/cuDNN wheels it needs) instead of the CPU build.

    Returns:
        Lines like "onnxruntime==1.31.1".

    Raises:
        UserError: onnxruntime or another runtime package is not installed here.
    """
    ort_version = None
    for dist in ONNXRUNTIME_DISTS:
        try:
            ort_version = metadata.version(dist)
            break
        except metadata.PackageNotFoundError:
            continue
    if ort_version is None:
        raise UserError("onnxruntime is not installed, so its version cannot be pinned")
    ort = f"onnxruntime-gpu[cuda,cudnn]=={ort_version}" if gpu else f"onnxruntime=={ort_version}"
    lines = [ort]
    for dist in RUNTIME_PACKAGES:
        try:
            lines.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError as err:
            raise UserError(f"{dist} is not installed, so its version cannot be pinned") from err
    return lines


def gradio_version() -> str:
    """The installed gradio version: the Space's `sdk_version`."""
    try:
        return metadata.version("gradio")
    except metadata.PackageNotFoundError as err:
        raise UserError("gradio is not installed: pip install -r requirements.txt") from err


def validate(options: BundleOptions) -> None:
    """Check every option at once; raise one UserError listing every problem."""
    issues = []
    local = is_local_model(options.model)
    if not options.model:
        issues.append("--model is empty")
    elif options.embed_model and not local:
        issues.append(f"--embed-model needs a local model directory; {options.model!r} is not "
                      "one (download it first: huggingface-cli download ID --local-dir DIR)")
    elif not options.embed_model and local:
        issues.append(f"--model {options.model} is a local directory, which a Space cannot "
                      "read: add --embed-model to copy it in, or give its Hub id")
    elif not local and (problem := repo_id_problem(options.model, need_namespace=False)):
        issues.append(f"--model: {problem}")
    if options.space_id != PLACEHOLDER_SPACE_ID and (
        problem := repo_id_problem(options.space_id, need_namespace=True)
    ):
        issues.append(f"--space-id: {problem}")
    if not options.title.strip() or "\n" in options.title:
        issues.append("--title must be one non-empty line")
    out = Path(options.output_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        issues.append(f"--output-dir {out} exists and is not empty (nothing is overwritten)")
    for needed in ("app.py", "generation/__init__.py"):
        if not (Path(options.source_root) / needed).is_file():
            issues.append(f"{needed} is missing from {options.source_root}")
    if issues:
        raise UserError("; ".join(issues))


def build_bundle(options: BundleOptions, token: str | None = None) -> Bundle:
    """Write the Space repository into `options.output_dir`.

    Args:
        options: what to build.
        token: the user's Hugging Face token, which must not be in the bundle (default:
            huggingface_hub's lookup: HF_TOKEN, else the stored login).

    Returns:
        The bundle: its folder and its files with sizes.

    Raises:
        UserError: bad options, a model dir without the engine's files or with one that leads
            out of it (a symlink), a bundle over the Hub's or a Space's size limits, code that
            imports a package the Space would not install, or a file holding a token (then
            nothing is left in the output folder).
    """
    validate(options)
    source = Path(options.source_root)
    model_files = engine_files(Path(options.model).expanduser()) if options.embed_model else []
    code = code_files(source)
    check_imports(source, code)
    requirements = runtime_requirements(options.gpu)
    warnings = check_limits([(f"{EMBED_DIR}/{p.name}", p.stat().st_size) for p in model_files]
                            + [(rel.as_posix(), (source / rel).stat().st_size) for rel in code])

    out = Path(options.output_dir)
    existed = out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        _write(options, out, source, code, model_files, requirements)
        bundle = Bundle(out, list_files(out), tuple(warnings))
        refuse_tokens(bundle, _stored_token() if token is None else token)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        if existed:
            out.mkdir()
        raise
    return bundle


def _write(options: BundleOptions, out: Path, source: Path, code: list[Path],
           model_files: list[Path], requirements: list[str]) -> None:
    for rel in code:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        text = (source / rel).read_text(encoding="utf-8")
        if rel == Path("app.py"):
            text = with_default_model(text, embedded=options.embed_model, model=options.model)
        (out / rel).write_text(text, encoding="utf-8")
    if model_files:
        (out / EMBED_DIR).mkdir()
        for path in model_files:
            copy_sparse(path, out / EMBED_DIR / path.name)
    (out / "requirements.txt").write_text("\n".join(requirements) + "\n", encoding="utf-8")
    (out / "README.md").write_text(render_card(_card_info(options)), encoding="utf-8")


def _stored_token() -> str | None:
    from huggingface_hub import get_token

    return get_token()


def refuse_tokens(bundle: Bundle, token: str | None) -> None:
    """Refuse a bundle in which any file holds `token` or anything shaped like an HF token,
    raw or in any JSON spelling (`space.tokens`), reading each file in chunks.

    Raises:
        UserError: naming the first such file (never the token).
    """
    for rel, _ in bundle.files:
        if holds_token(bundle.path / rel, token or None):
            raise UserError(f"refusing to build: {rel} contains a Hugging Face token")


def list_files(folder: Path) -> list[tuple[str, int]]:
    """Every file under `folder` as (posix relative path, size in bytes), sorted."""
    return sorted(
        (p.relative_to(folder).as_posix(), p.stat().st_size)
        for p in folder.rglob("*") if p.is_file()
    )


def _card_info(options: BundleOptions) -> CardInfo:
    command = options.command or "python -m space " + shlex.join(
        ["build", "--model", options.model, "--output-dir", str(options.output_dir)]
        + ["--embed-model"] * options.embed_model + ["--gpu"] * options.gpu
    )
    return CardInfo(
        title=options.title,
        sdk_version=gradio_version(),
        python_version=f"{sys.version_info.major}.{sys.version_info.minor}",
        models=[] if options.embed_model else [options.model],
        model_ref=options.model,
        embedded=options.embed_model,
        hardware="t4-small" if options.gpu else "cpu-basic",
        space_id=options.space_id,
        build_command=command,
    )
