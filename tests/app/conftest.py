"""A real demo server on 127.0.0.1, started as `python app.py` in a subprocess.

The model is the bundled `demo_model/` when it is there, else the tiny fixture model's ONNX
export, so these tests pass before and after the demo model is committed.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench._server import start_app, stop_app
from tests.conftest import REPO_ROOT

DEMO_MODEL = REPO_ROOT / "demo_model"


@dataclass
class Server:
    url: str
    model: Path
    log: Path


def demo_model_ready() -> bool:
    return (DEMO_MODEL / "tokenizer.json").is_file() and any(DEMO_MODEL.glob("*.onnx"))


@pytest.fixture(scope="session")
def app_model_dir(request) -> Path:
    """The bundled demo model, or the tiny fixture model's ONNX export while it is absent."""
    if demo_model_ready():
        return DEMO_MODEL
    return request.getfixturevalue("tiny_onnx_dir")


def start_server(model: Path, log: Path, **env: str) -> tuple[subprocess.Popen, str]:
    """Run `python app.py` on a free port and wait until it answers.

    Returns:
        (the process, its URL).
    """
    return start_app(model, log, **env)


def start_faulty(model: Path, log: Path, **env: str) -> tuple[subprocess.Popen, str]:
    """`start_server` for the demo with the faults of faulty_app.py."""
    script = Path(__file__).with_name("faulty_app.py")
    return start_app(model, log, argv=[sys.executable, str(script)], PYTHONPATH=str(REPO_ROOT), **env)


def stop_server(proc: subprocess.Popen) -> None:
    stop_app(proc)


@pytest.fixture(scope="session")
def server(app_model_dir, tmp_path_factory) -> Iterator[Server]:
    """One demo server for the whole session (handlers keep no per-user state)."""
    log = tmp_path_factory.mktemp("app_server") / "server.log"
    proc, url = start_server(app_model_dir, log)
    yield Server(url=url, model=app_model_dir, log=log)
    stop_server(proc)


@pytest.fixture(scope="session")
def engine(app_model_dir):
    """The same model loaded in the test process: the reference the server must agree with."""
    from generation import Engine

    return Engine.load(app_model_dir)


@pytest.fixture
def client(server):
    from gradio_client import Client

    return Client(server.url, verbose=False)
