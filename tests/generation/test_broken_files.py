"""A model directory with a broken file: `Engine.load` raises ModelFileError naming it, and
`python -m generation` / `python app.py` say so in one line and exit 2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from generation import Engine, ModelFileError
from tests.conftest import REPO_ROOT

ONNX = "decode_fp32.onnx"


def truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def random_bytes(path: Path) -> None:
    path.write_bytes(os.urandom(path.stat().st_size))


def empty(path: Path) -> None:
    path.write_bytes(b"")


def external_data_gone(path: Path) -> None:
    import onnx

    model = onnx.load(path)
    onnx.save(model, path, save_as_external_data=True, location=path.name + ".data", size_threshold=0)
    (path.parent / (path.name + ".data")).unlink()


def not_json(path: Path) -> None:
    path.write_text(path.read_text()[:40])


def a_list(path: Path) -> None:
    path.write_text("[1, 2]")


def wrong_type(path: Path) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), "vocab_size": "many"}))


def files_a_list(path: Path) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), "files": ["decode_fp32.onnx"]}))


BROKEN = [(ONNX, truncate), (ONNX, random_bytes), (ONNX, empty), (ONNX, external_data_gone),
          ("tokenizer.json", not_json), ("tokenizer.json", a_list), ("config.json", not_json),
          ("config.json", a_list), ("config.json", wrong_type), ("decode.json", not_json),
          ("decode.json", files_a_list), ("generation_config.json", not_json)]


@pytest.fixture
def broken(request, decode_dir, tmp_path) -> tuple[Path, str]:
    """A copy of the tiny decode export with one file broken: (the directory, the file)."""
    name, breaker = request.param
    out = tmp_path / "model"
    shutil.copytree(decode_dir, out)
    breaker(out / name)
    return out, name


@pytest.mark.parametrize("broken", BROKEN, indirect=True, ids=[f"{n}-{f.__name__}" for n, f in BROKEN])
def test_a_broken_file_is_a_model_file_error_naming_it(broken):
    model, name = broken
    with pytest.raises(ModelFileError) as err:
        Engine.load(model, precision="fp32", provider="cpu")
    message = str(err.value)
    assert name in message and "\n" not in message, message
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("broken", [(ONNX, truncate), ("config.json", not_json)], indirect=True,
                         ids=["onnx", "config"])
@pytest.mark.parametrize("command", [["-m", "generation", "--prompt", "We propose", "--precision", "fp32"], ["app.py"]],
                         ids=["generation", "app"])
def test_the_commands_say_it_in_one_line_with_exit_2(broken, command):
    model, name = broken
    done = subprocess.run([sys.executable, *command, "--model", str(model)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PRECISION": "fp32"})
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and name in lines[0], done.stderr[-2000:]
