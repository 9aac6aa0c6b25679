"""The project's code that goes into the Space: which files, what they import, and app.py's
default model."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from space.errors import UserError

APP_FILE = Path("app.py")
CODE_PACKAGES = ("generation", "demo")
# What the Space has installed: requirements.txt's runtime plus gradio (from sdk_version).
SPACE_MODULES = frozenset(
    {"onnxruntime", "tokenizers", "numpy", "huggingface_hub", "gradio", "gradio_client"}
    | set(CODE_PACKAGES)
)


def is_allowed_code(rel: Path) -> bool:
    """Whether a path (relative to the checkout) is code that belongs in the Space.

    Only `.py` files of the code packages pass, and none under a hidden folder, a
    `__pycache__` or a training `checkpoint-*` folder.

    Args:
        rel: a path relative to the checkout, e.g. `generation/engine.py`.

    Returns:
        True for allow-listed code.
    """
    parts = rel.parts
    if rel == APP_FILE:
        return True
    if len(parts) < 2 or parts[0] not in CODE_PACKAGES or rel.suffix != ".py":
        return False
    return not any(
        p.startswith(".") or p == "__pycache__" or p.startswith("checkpoint-") for p in parts[:-1]
    ) and not parts[-1].startswith(".")


def code_files(source_root: Path) -> list[Path]:
    """The allow-listed code files under `source_root`, relative to it, sorted.

    Only modules that are imported go in: those reachable from app.py and from each
    package's `__init__.py` / `__main__.py`. A stray `generation/local_settings.py` that
    nothing imports (holding a token, say) stays out.

    Args:
        source_root: the checkout holding app.py and the code packages.

    Returns:
        `app.py` first, then the packages' imported `.py` files.
    """
    roots = [APP_FILE] + [Path(package, name) for package in CODE_PACKAGES
                          for name in ("__init__.py", "__main__.py")]
    todo = [rel for rel in roots if _is_code(source_root, rel)]
    found: set[Path] = set()
    while todo:
        rel = todo.pop()
        if rel in found:
            continue
        found.add(rel)
        tree = ast.parse((source_root / rel).read_text(encoding="utf-8"))
        todo += [dep for dep in _imported_files(rel, tree) if _is_code(source_root, dep)]
    return [APP_FILE] + sorted(found - {APP_FILE})


def _is_code(source_root: Path, rel: Path) -> bool:
    path = source_root / rel
    return path.is_file() and not path.is_symlink() and is_allowed_code(rel)


def _imported_files(rel: Path, tree: ast.AST) -> list[Path]:
    """Candidate files (relative to the checkout) of the modules that `tree` imports."""
    modules: list[tuple[str, ...]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules += [tuple(alias.name.split(".")) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = tuple(rel.parent.parts[:len(rel.parent.parts) - node.level + 1]) \
                if node.level else ()
            module = base + tuple((node.module or "").split(".") if node.module else ())
            # `from pkg import name` may name a submodule: try both.
            modules += [module] + [module + (alias.name,) for alias in node.names]
    files = []
    for parts in modules:
        if parts and parts[0] in CODE_PACKAGES:
            files += [Path(*parts[:i], "__init__.py") for i in range(1, len(parts) + 1)]
            if len(parts) > 1:
                files.append(Path(*parts[:-1], parts[-1] + ".py"))
    return files


def foreign_imports(source: str) -> set[str]:
    """Top-level module names that `source` imports and the Space would not have.

    Imports inside a `try:` block count as optional and are ignored; relative imports are
    the package's own.

    Args:
        source: Python source text.

    Returns:
        Module names outside the standard library and the Space's runtime.
    """
    guarded: set[int] = set()
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Try):
            guarded.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    names = set()
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in SPACE_MODULES}


def check_imports(source_root: Path, files: list[Path]) -> None:
    """Refuse code that would crash on the Space for want of a package.

    Raises:
        UserError: naming each file and the modules it imports that the Space lacks.
    """
    problems = []
    for rel in files:
        extra = foreign_imports((source_root / rel).read_text(encoding="utf-8"))
        if extra:
            problems.append(f"{rel.as_posix()} imports {', '.join(sorted(extra))}")
    if problems:
        raise UserError("the Space would not install what this code imports: "
                        + "; ".join(problems))


def with_default_model(app_source: str, *, embedded: bool, model: str) -> str:
    """app.py with `MODEL_ID` defaulted to the bundle's model (a Space variable still wins).

    The lines go after the module docstring and any `from __future__` import, which must
    stay first.

    Args:
        app_source: the project's app.py.
        embedded: the model ships in the bundle's `model/` folder.
        model: the Hub id to default to when not embedded.

    Returns:
        The Space's app.py.
    """
    if embedded:
        value = '_space_os.path.join(_space_os.path.dirname(_space_os.path.abspath(__file__)), "model")'
    else:
        value = repr(model)
    header = (
        "# Added by `python -m space build`: the model this Space serves unless MODEL_ID is set.\n"
        "import os as _space_os\n"
        f'_space_os.environ.setdefault("MODEL_ID", {value})\n'
    )
    body = ast.parse(app_source).body
    after = 0
    for index, node in enumerate(body):
        is_docstring = (index == 0 and isinstance(node, ast.Expr)
                        and isinstance(node.value, ast.Constant)
                        and isinstance(node.value.value, str))
        if is_docstring or (isinstance(node, ast.ImportFrom) and node.module == "__future__"):
            after = node.end_lineno
        else:
            break
    lines = app_source.splitlines(keepends=True)
    if after and not lines[after - 1].endswith("\n"):
        lines[after - 1] += "\n"
    return "".join(lines[:after]) + header + "".join(lines[after:])
