"""A real demo server for benchmarks and tests: `python app.py` on 127.0.0.1 in a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from generation import serve

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(model: Path, log: Path, argv: list[str] | None = None,
              **env: str) -> tuple[subprocess.Popen, str]:
    """Run the demo on a free port and wait until it answers.

    Args:
        model: the model directory given as --model.
        log: where the server's output goes.
        argv: the command before the options (default: `python app.py`).
        env: extra environment variables (the app's settings).

    Returns:
        (the process, its URL).

    Raises:
        RuntimeError: the server exited or did not answer within 180 s (its log attached).
    """
    port = free_port()
    full_env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", **env}
    command = argv or [sys.executable, str(REPO_ROOT / "app.py")]
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [*command, "--model", str(model), "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO_ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url + "config", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"app.py did not answer within 180 s:\n{log.read_text()}")


def stop_app(proc: subprocess.Popen) -> None:
    """Terminate the server (kill it after 20 s)."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """A process's resident memory (VmRSS) or its peak so far (VmHWM), in MiB; 0 if unknown."""
    return serve.rss_mib(pid, field)
