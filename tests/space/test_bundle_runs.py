"""The bundle runs alone: a fresh virtual environment holding only its requirements.txt plus
gradio==<sdk_version> serves the embedded tiny model on 127.0.0.1, answers the README's
gradio_client call with three texts, and has no torch."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from space.bundle import BundleOptions, build_bundle
from tests.conftest import REPO_ROOT
from tests.space.conftest import front_matter

SPACE_ID = "someone/neo-demo"
START_TIMEOUT_S = 180


def _project_ready() -> str | None:
    """Why the bundle cannot run yet (app.py or the engine has not landed), or None."""
    app = (REPO_ROOT / "app.py").read_text()
    ui = REPO_ROOT / "demo" / "ui.py"  # the Gradio page app.py launches
    gradio = "import gradio" in app or (ui.is_file() and "import gradio" in ui.read_text())
    if not gradio or 'if __name__ == "__main__"' not in app:
        return "app.py is still the placeholder (no Gradio server to start)"
    import generation

    if not hasattr(generation, "Engine"):
        return "generation.Engine has not landed yet"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(port: int, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"app.py exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    pytest.fail(f"app.py did not listen within {START_TIMEOUT_S}s:\n{log.read_text()[-3000:]}")


def _readme_snippet(readme: Path, url: str) -> str:
    """The README's gradio_client snippet, pointed at the local server instead of the Space."""
    code = re.search(r"```python\n(.*?)```", readme.read_text(), re.S).group(1)
    assert f'Client("{SPACE_ID}")' in code
    return code.replace(f'Client("{SPACE_ID}")', f'Client("{url}")')


@pytest.fixture(scope="module")
def venv_python(tmp_path_factory, tiny_onnx_dir):
    """The embedded bundle and a fresh venv made from its requirements.txt + gradio only."""
    if reason := _project_ready():
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("bundle_runs")
    bundle = build_bundle(BundleOptions(model=str(tiny_onnx_dir), output_dir=work / "bundle",
                                        embed_model=True, space_id=SPACE_ID))
    sdk_version = front_matter(bundle.path / "README.md")["sdk_version"]
    subprocess.run([sys.executable, "-m", "venv", str(work / "venv")], check=True)
    python = work / "venv" / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-r", "requirements.txt", f"gradio=={sdk_version}"],
        cwd=bundle.path, capture_output=True, text=True, timeout=600,
    )
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    return python, bundle.path


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_venv_has_no_torch_transformers_or_optimum(venv_python):
    python, _ = venv_python
    for module in ("torch", "transformers", "optimum"):
        run = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True,
                             text=True)
        assert run.returncode != 0 and "ModuleNotFoundError" in run.stderr, module


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_bundle_serves_the_readme_call_from_a_fresh_venv(venv_python, tmp_path, tiny_onnx_dir):
    from generation import Engine, SamplingParams

    python, bundle = venv_python
    port = _free_port()
    log = tmp_path / "app.log"
    # No MODEL_ID: the bundle's own default (its model/ folder) must be what is served.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
           "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "CONCURRENCY": "1"}
    with log.open("w") as out:
        server = subprocess.Popen(
            [str(python), "app.py", "--host", "127.0.0.1", "--port", str(port)],
            cwd=bundle, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        _wait_for(port, server, log)
        scope: dict = {}
        exec(_readme_snippet(bundle / "README.md", f"http://127.0.0.1:{port}/"), scope)
    finally:
        server.terminate()
        server.wait(timeout=30)
    served = log.read_text()
    assert str(bundle / "model") in served, served[-2000:]  # the bundle's own model, by default
    texts = [scope["greedy"], scope["sampling"], scope["top_k_top_p"]]
    assert all(isinstance(t, str) for t in texts)
    # Greedy is deterministic: the engine on the same export, in this process, agrees.
    engine = Engine.load(tiny_onnx_dir, provider="cpu")
    (row,) = engine.generate("We propose a new method for", [SamplingParams()],
                             max_new_tokens=64)
    assert texts[0] == row.text and row.text
