"""Fixtures for the export tests: one CLI export of the tiny model, shared by the module."""

from __future__ import annotations

from pathlib import Path

import pytest


class FakeHub:
    """Stands in for `huggingface_hub.HfApi` (the Hub is unreachable here): records calls."""

    calls: list[tuple[str, dict]] = []

    def __init__(self, token=None):
        self.token = token

    def create_repo(self, **kwargs):
        FakeHub.calls.append(("create_repo", kwargs))

    def upload_folder(self, **kwargs):
        FakeHub.calls.append(("upload_folder", kwargs))
        return "http://127.0.0.1/fake/commit/1"


@pytest.fixture()
def fake_hub(monkeypatch):
    import huggingface_hub

    FakeHub.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    return FakeHub


@pytest.fixture(scope="session")
def exported(tmp_path_factory, tiny_model_dir) -> tuple[int, Path]:
    """(exit code, output dir) of `python -m export --quantize int8 int4` on the tiny model
    (decode graphs fp32, int8, int4 by default)."""
    from export.cli import main

    out = tmp_path_factory.mktemp("export") / "onnx"
    code = main(["--model", str(tiny_model_dir), "--output-dir", str(out),
                 "--quantize", "int8", "int4", "--int4-block-size", "16",
                 "--int8-block-size", "16"])
    return code, out
