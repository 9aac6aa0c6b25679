"""Fixtures for the Space tests: a copy of the project's code with junk planted beside it,
and a recording stand-in for the Hugging Face Hub client (the Hub is out of reach here)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT

JUNK = {
    ".env": "HF_TOKEN=hf_planted_secret_do_not_ship\n",
    "token": "hf_planted_secret_do_not_ship\n",
    "generation/.env": "HF_TOKEN=hf_planted_secret_do_not_ship\n",
    "generation/__pycache__/engine.cpython-311.pyc": "not python source",
    "generation/__pycache__/stale.py": "x = 1\n",
    "generation/checkpoint-1/trainer_state.py": "x = 1\n",
    "generation/checkpoint-1/model.safetensors": "weights",
    "generation/.cache/notes.py": "x = 1\n",
    "generation/notes.txt": "scratch",
    "generation/.hidden.py": "x = 1\n",
    "cache/huggingface/model.onnx": "cached",
}


def front_matter(readme: Path) -> dict:
    """The YAML between the leading `---` lines of a README.md, parsed."""
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("---\n"), "README.md must open with front matter"
    return yaml.safe_load(text.split("---\n", 2)[1])


CODE_PACKAGES = ("generation", "demo")
# Code written ahead of the code that will use it: nothing imports it yet, so the bundle rightly
# leaves it out. Remove a file from here once the engine imports it.
NOT_IMPORTED_YET: set[str] = set()


def project_code(root: Path) -> set[str]:
    """app.py and the .py files of the code packages in a checkout (before any junk is planted)."""
    return {"app.py"} | {
        p.relative_to(root).as_posix() for package in CODE_PACKAGES
        for p in (root / package).rglob("*.py") if "__pycache__" not in p.parts
    } - NOT_IMPORTED_YET


@pytest.fixture
def source_copy(tmp_path) -> tuple[Path, set[str]]:
    """A copy of the project's app.py + code packages with caches, secrets and checkpoints
    planted beside them; returns the copy and the code files the bundle must hold."""
    root = tmp_path / "checkout"
    root.mkdir()
    shutil.copy(REPO_ROOT / "app.py", root / "app.py")
    for package in CODE_PACKAGES:
        shutil.copytree(REPO_ROOT / package, root / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    expected = project_code(root)
    for rel, text in JUNK.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root, expected


class RecordingHub:
    """Stands in for `huggingface_hub.HfApi`: records each call, keeps a copy of every
    uploaded file (the bundle's folder is temporary), and can fail at a named step."""

    def __init__(self, token: str, fail_at: str | None = None, variables: dict | None = None):
        self.token = token
        self.fail_at = fail_at
        self.variables = dict(variables or {})  # the Space's variables before the deploy
        self.calls: list[tuple[str, tuple, dict]] = []
        self.uploaded: dict[str, bytes] = {}

    def _record(self, name: str, args: tuple, kwargs: dict) -> None:
        self.calls.append((name, args, kwargs))
        if name == self.fail_at:
            # A failure whose message leaks the token, as an HTTP error could.
            raise ConnectionError(f"503 Server Error for {name} (Authorization: Bearer {self.token})")

    def create_repo(self, *args, **kwargs):
        self._record("create_repo", args, kwargs)
        return f"https://huggingface.co/spaces/{args[0] if args else kwargs['repo_id']}"

    def upload_folder(self, *args, **kwargs):
        folder = Path(kwargs["folder_path"])
        self.uploaded = {
            p.relative_to(folder).as_posix(): p.read_bytes()
            for p in folder.rglob("*") if p.is_file()
        }
        self._record("upload_folder", args, kwargs)
        return "commit"

    def add_space_variable(self, *args, **kwargs):
        self._record("add_space_variable", args, kwargs)
        return {}

    def get_space_variables(self, *args, **kwargs):
        self._record("get_space_variables", args, kwargs)
        return dict(self.variables)

    def delete_space_variable(self, *args, **kwargs):
        self._record("delete_space_variable", args, kwargs)
        self.variables.pop(args[1], None)
        return {}

    @property
    def names(self) -> list[str]:
        return [name for name, _, _ in self.calls]
