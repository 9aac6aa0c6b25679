"""`python -m space deploy` against a recording fake of the Hub client (the Hub is out of
reach here): the right calls, exactly the bundle uploaded, the token never shown."""

from __future__ import annotations

import re
import secrets
import shlex

import pytest

import space.deploy
from space.bundle import BundleOptions, build_bundle
from space.cli import main
from tests.space.conftest import RecordingHub

SPACE_ID = "someone/neo-demo"
MODEL = "someone/neo-xscience"


@pytest.fixture
def token(monkeypatch) -> str:
    """A token in HF_TOKEN, where `huggingface_hub.get_token()` finds it."""
    value = "hf_" + secrets.token_hex(17)
    monkeypatch.setenv("HF_TOKEN", value)
    return value


@pytest.fixture
def hubs(monkeypatch) -> list[RecordingHub]:
    """Every Hub client the deploy makes; `hubs.fail_at` makes the next one fail there."""
    class Made(list):
        fail_at: str | None = None
        variables: dict = {}

    made = Made()

    def factory(tok: str) -> RecordingHub:
        made.append(RecordingHub(tok, fail_at=made.fail_at, variables=made.variables))
        return made[-1]

    monkeypatch.setattr(space.deploy, "default_hub_factory", factory)
    return made


def deploy_cli(capsys, *extra: str) -> tuple[int, str, str, list[str]]:
    argv = ["deploy", "--space-id", SPACE_ID, "--model", MODEL, *extra]
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err, argv


def expected_bundle(tmp_path, argv: list[str]) -> dict[str, bytes]:
    """The bundle `deploy` should build, built here independently."""
    bundle = build_bundle(BundleOptions(
        model=MODEL, output_dir=tmp_path / "expected", space_id=SPACE_ID,
        gpu="--gpu" in argv, command="python -m space " + shlex.join(argv)))
    return {rel: (bundle.path / rel).read_bytes() for rel, _ in bundle.files}


def test_deploy_makes_the_right_calls_and_uploads_exactly_the_bundle(
        tmp_path, capsys, token, hubs):
    code, out, err, argv = deploy_cli(capsys, "--private")
    assert code == 0, err
    (hub,) = hubs
    assert hub.token == token
    assert hub.names == ["create_repo", "upload_folder", "add_space_variable"]
    _, args, kwargs = hub.calls[0]
    assert args == (SPACE_ID,)
    assert kwargs == {"repo_type": "space", "space_sdk": "gradio", "private": True,
                      "exist_ok": True}
    _, _, kwargs = hub.calls[1]
    assert kwargs["repo_id"] == SPACE_ID and kwargs["repo_type"] == "space"
    assert kwargs["delete_patterns"] == "*"
    assert hub.calls[2][1] == (SPACE_ID, "MODEL_ID", MODEL)
    assert hub.uploaded == expected_bundle(tmp_path, argv)
    assert out.strip().splitlines()[-1] == f"Deployed: https://huggingface.co/spaces/{SPACE_ID}"
    assert token not in out + err
    assert not any(token.encode() in data for data in hub.uploaded.values())


def test_public_by_default(capsys, token, hubs):
    assert deploy_cli(capsys)[0] == 0
    assert hubs[0].calls[0][2]["private"] is False


def test_dry_run_lists_every_file_and_uploads_nothing(tmp_path, capsys, token, hubs):
    code, out, err, argv = deploy_cli(capsys, "--dry-run")
    assert code == 0, err
    assert hubs == []
    listed = dict(
        (m.group(2), int(m.group(1).replace(",", "")))
        for m in re.finditer(r"^\s+([\d,]+)\s+(\S+)$", out, re.M)
    )
    assert listed == {rel: len(data) for rel, data in expected_bundle(tmp_path, argv).items()}
    assert f"https://huggingface.co/spaces/{SPACE_ID}" in out
    assert f"MODEL_ID={MODEL}" in out
    assert "nothing was uploaded" in out
    assert token not in out + err


def test_dry_run_needs_no_token(capsys, monkeypatch, hubs):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(space.deploy, "stored_token", lambda: None)
    assert deploy_cli(capsys, "--dry-run")[0] == 0
    assert hubs == []


def test_missing_token_is_a_user_error(capsys, monkeypatch, hubs):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(space.deploy, "stored_token", lambda: None)
    code, out, err, _ = deploy_cli(capsys)
    assert code == 2 and hubs == []
    assert err.count("\n") == 1 and "HF_TOKEN" in err and "huggingface-cli login" in err


@pytest.mark.parametrize("space_id", ["nouser", "a/b/c", "user/bad..name", "user/-x", ""])
def test_bad_space_id_is_a_user_error(capsys, token, hubs, space_id):
    code = main(["deploy", "--space-id", space_id, "--model", MODEL])
    err = capsys.readouterr().err
    assert code == 2 and hubs == []
    assert err.startswith("error: --space-id") and err.count("\n") == 1


def test_local_model_dir_is_a_user_error(tmp_path, capsys, token, hubs):
    code = main(["deploy", "--space-id", SPACE_ID, "--model", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and hubs == [] and "--push-to-hub" in err and "--embed-model" in err


@pytest.mark.parametrize("earlier_variable", [False, True])
def test_embed_model_deploys_a_local_model_in_one_command(tmp_path, capsys, token, hubs,
                                                          tiny_onnx_dir, earlier_variable):
    """No MODEL_ID variable may point elsewhere: an earlier deploy's is deleted."""
    hubs.variables = {"MODEL_ID": MODEL} if earlier_variable else {}
    argv = ["deploy", "--space-id", SPACE_ID, "--model", str(tiny_onnx_dir), "--embed-model"]
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    (hub,) = hubs
    expected = ["create_repo", "upload_folder", "get_space_variables"]
    assert hub.names == expected + ["delete_space_variable"] * earlier_variable
    if earlier_variable:
        assert hub.calls[-1][1] == (SPACE_ID, "MODEL_ID")
    bundle = build_bundle(BundleOptions(
        model=str(tiny_onnx_dir), output_dir=tmp_path / "expected", space_id=SPACE_ID,
        embed_model=True, command="python -m space " + shlex.join(argv)))
    assert hub.uploaded == {rel: (bundle.path / rel).read_bytes() for rel, _ in bundle.files}
    assert "model/tokenizer.json" in hub.uploaded and token not in out + err


@pytest.mark.parametrize("step", ["create_repo", "upload_folder", "add_space_variable"])
def test_failing_hub_step_is_one_clear_line_without_the_token(capsys, token, hubs, step):
    hubs.fail_at = step
    code, out, err, _ = deploy_cli(capsys)
    assert code == 1
    assert err.count("\n") == 1 and f"failed at {step}" in err and "ConnectionError" in err
    assert token not in out + err and "***" in err
    names = hubs[0].names
    assert names[-1] == step  # nothing after the failing step
    assert "Deployed" not in out


def test_a_bundle_holding_the_token_is_never_uploaded(capsys, monkeypatch, hubs):
    # A token that happens to occur in the bundle (here: in requirements.txt and README.md).
    monkeypatch.setenv("HF_TOKEN", "onnxruntime")
    code, out, err, _ = deploy_cli(capsys)
    assert code == 2 and hubs == [] and err.count("\n") == 1
    assert "refusing to build" in err and "contains a Hugging Face token" in err
