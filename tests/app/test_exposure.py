"""What a public server must not do: host uploads, show its directories, or fill its log with
tracebacks for bad requests (a real server on 127.0.0.1)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid

import pytest

from tests.conftest import REPO_ROOT

PROMPT = "In this paper, we propose a new method for"


def post(url: str, body: bytes, content_type: str) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_a_large_upload_is_refused(server):
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; "
            f"filename=\"big.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
    body += b"\0" * (2 << 20) + f"\r\n--{boundary}--\r\n".encode()
    status, text = post(server.url + "gradio_api/upload", body,
                        f"multipart/form-data; boundary={boundary}")
    assert status == 413, (status, text[:200])
    assert "maximum allowed size" in text


def test_config_shows_no_absolute_model_path(server):
    with urllib.request.urlopen(server.url + "config", timeout=30) as resp:
        config = resp.read().decode()
    model = server.model.resolve()
    assert str(model) not in config and json.dumps(str(model))[1:-1] not in config
    assert str(REPO_ROOT) not in config
    assert (model.relative_to(REPO_ROOT).as_posix() if model.is_relative_to(REPO_ROOT)
            else model.name) in config


def test_shown_model_is_a_hub_id_a_path_under_the_app_or_a_folder_name(tmp_path):
    from app import HERE
    from demo.view import shown_model

    assert shown_model("someone/neo-xscience") == "someone/neo-xscience"
    assert shown_model(str(HERE / "demo_model")) == "demo_model"
    (tmp_path / "private" / "export").mkdir(parents=True)
    assert shown_model(str(tmp_path / "private" / "export")) == "export"


def call_raw(server, api_name: str, body: bytes) -> str:
    """POST raw JSON to the REST API and return the event stream of the call."""
    status, text = post(f"{server.url}gradio_api/call/{api_name}", body, "application/json")
    assert status == 200, text
    event_id = json.loads(text)["event_id"]
    with urllib.request.urlopen(f"{server.url}gradio_api/call/{api_name}/{event_id}",
                                timeout=60) as resp:
        return resp.read().decode()


@pytest.mark.parametrize("api_name", ["generate", "top_k_top_p"])
def test_a_huge_top_k_is_a_clear_error(server, api_name):
    body = json.dumps({"data": [PROMPT, 8, 0.8, 10**30, 0.9, 0]}).encode()
    events = call_raw(server, api_name, body)
    assert "event: error" in events and "top_k must be a whole number from 0 to" in events


def test_an_integer_beyond_a_float_is_a_clear_error(server):
    # JSON has integers of any size; float() of this one overflows.
    body = json.dumps({"data": [PROMPT, 8, 0.8, 10**400, 0.9, 0]}).encode()
    events = call_raw(server, "generate", body)
    assert "event: error" in events and "top_k must be a whole number from 0 to" in events


def test_a_prompt_with_a_lone_surrogate_is_a_clear_error(server):
    # Valid JSON (an escape) that decodes to a str no encoder accepts.
    body = b'{"data": ["abc\\ud800 def", 8, 0.8, 40, 0.9, 0]}'
    events = call_raw(server, "generate", body)
    assert "event: error" in events and "not valid Unicode text" in events


def test_a_rejected_request_logs_one_line_not_a_traceback(server):
    marker = f"bad-{uuid.uuid4().hex}"
    call_raw(server, "generate", json.dumps({"data": [PROMPT, 8, marker, 40, 0.9, 0]}).encode())
    log = server.log.read_text()
    lines = [line for line in log.splitlines() if marker in line]
    assert len(lines) == 1 and lines[0].startswith("app.py: rejected request: ")
    assert "Traceback" not in log
