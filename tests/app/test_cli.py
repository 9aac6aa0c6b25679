"""`python app.py` with a model it cannot load: one clear line and exit code 2."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT


def run_app(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / "app.py"), *args], capture_output=True,
                          text=True, timeout=120, env=env)


def test_missing_model_is_one_clear_line(tmp_path):
    done = run_app("--model", str(tmp_path / "nowhere"))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot load the model" in lines[0] and "nowhere" in lines[0]


def test_directory_without_onnx_is_one_clear_line(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    done = run_app("--model", str(tmp_path))
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "ONNX" in done.stderr


def test_help_names_every_option():
    done = run_app("--help")
    assert done.returncode == 0
    for option in ("--model", "--host", "--port", "--share", "MODEL_ID"):
        assert option in done.stdout
