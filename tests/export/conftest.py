"""Fixtures for the export tests (the shared CLI export of the tiny model, `exported`, is in
tests/conftest.py: the bench and scripts tests read it too)."""

from __future__ import annotations

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
