"""`python -m space build`: a complete Space repository, from an allow-list only."""

from __future__ import annotations

import filecmp
import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from space.bundle import ENGINE_FILES, OPTIONAL_ENGINE_FILES, BundleOptions, build_bundle
from space.card import MAX_SHORT_DESCRIPTION
from space.cli import main
from space.errors import UserError
from space.source import with_default_model
from tests.conftest import REPO_ROOT
from tests.space.conftest import front_matter, write_graph

HUB_ID = "someone/neo-xscience"
REQUIRED_KEYS = {
    "title", "emoji", "colorFrom", "colorTo", "sdk", "sdk_version", "python_version",
    "app_file", "models", "datasets", "license", "short_description", "suggested_hardware",
    "tags",
}
COLORS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}


def project_pins() -> dict[str, str]:
    """name -> version for the `name==version` lines of the project's requirements.txt."""
    pins = {}
    for line in (REPO_ROOT / "requirements.txt").read_text().splitlines():
        if m := re.match(r"^([A-Za-z0-9_.\-]+)==([^\s#]+)", line.strip()):
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def requirement_pins(path: Path) -> dict[str, str]:
    lines = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]
    return {ln.split("==")[0].lower().replace("_", "-"): ln.split("==")[1] for ln in lines}


def test_front_matter_is_valid_spaces_yaml(tmp_path):
    from huggingface_hub import SpaceCard

    bundle = build_bundle(BundleOptions(model=HUB_ID, output_dir=tmp_path / "b",
                                        space_id="me/demo"))
    meta = front_matter(bundle.path / "README.md")
    assert set(meta) >= REQUIRED_KEYS, REQUIRED_KEYS - set(meta)
    assert meta["sdk"] == "gradio"
    assert meta["sdk_version"] == metadata.version("gradio") == project_pins()["gradio"]
    assert meta["python_version"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert meta["app_file"] == "app.py" and (bundle.path / "app.py").is_file()
    assert meta["models"] == [HUB_ID]
    assert meta["datasets"] == ["yaolu/multi_x_science_sum"]
    assert meta["suggested_hardware"] == "cpu-basic"
    assert 0 < len(meta["short_description"]) <= MAX_SHORT_DESCRIPTION
    assert {meta["colorFrom"], meta["colorTo"]} <= COLORS
    assert isinstance(meta["tags"], list) and meta["tags"]
    # huggingface_hub's own card parser reads the same metadata.
    card = SpaceCard.load(bundle.path / "README.md")
    assert card.data.sdk == "gradio" and card.data.sdk_version == meta["sdk_version"]
    body = (bundle.path / "README.md").read_text()
    assert 'Client("me/demo")' in body and 'api_name="/generate"' in body


def test_requirements_are_the_runtime_only_pinned_to_the_project(tmp_path):
    pins = requirement_pins(
        build_bundle(BundleOptions(model=HUB_ID, output_dir=tmp_path / "b")).path
        / "requirements.txt")
    assert set(pins) == {"onnxruntime", "tokenizers", "numpy", "huggingface-hub"}
    project = project_pins()
    assert pins["onnxruntime"] == project["onnxruntime-gpu"] == "1.31.1"
    assert pins["tokenizers"] == project["tokenizers"]
    assert pins["huggingface-hub"] == project["huggingface-hub"]
    assert pins["numpy"] == metadata.version("numpy")


def test_gpu_switches_onnxruntime_build_and_hardware(tmp_path):
    bundle = build_bundle(BundleOptions(model=HUB_ID, output_dir=tmp_path / "b", gpu=True))
    lines = (bundle.path / "requirements.txt").read_text().split()
    assert "onnxruntime-gpu[cuda,cudnn]==1.31.1" in lines
    assert not any(ln.startswith("onnxruntime==") for ln in lines)
    assert front_matter(bundle.path / "README.md")["suggested_hardware"] == "t4-small"


def test_only_allow_listed_files_reach_the_bundle(tmp_path, source_copy):
    root, code = source_copy
    bundle = build_bundle(BundleOptions(model=HUB_ID, output_dir=tmp_path / "b",
                                        source_root=root))
    files = {rel for rel, _ in bundle.files}
    assert files == code | {"README.md", "requirements.txt"}
    for rel in code - {"app.py"}:
        assert filecmp.cmp(root / rel, bundle.path / rel, shallow=False), rel
    for path in bundle.path.rglob("*"):
        assert "hf_planted_secret" not in (path.read_text() if path.is_file() else "")


def test_app_defaults_to_the_bundles_model_and_a_variable_wins(tmp_path):
    app_source = ('"""Doc."""\n\nfrom __future__ import annotations\n\nimport os\n\n'
                  'print(os.environ.get("MODEL_ID", "app-default"))\n')
    src = tmp_path / "src"
    (src / "generation").mkdir(parents=True)
    (src / "generation" / "__init__.py").write_text("")
    (src / "app.py").write_text(app_source)
    hub_app = build_bundle(BundleOptions(model=HUB_ID, output_dir=tmp_path / "hub",
                                         source_root=src)).path / "app.py"
    embed_app = tmp_path / "embed" / "app.py"
    embed_app.parent.mkdir()
    embed_app.write_text(with_default_model(app_source, embedded=True, model="unused"))

    def served(app: Path, **env: str) -> str:
        run = subprocess.run([sys.executable, str(app)], capture_output=True, text=True,
                             env={"PATH": "/usr/bin:/bin", **env}, check=True)
        return run.stdout.strip()

    assert served(hub_app) == HUB_ID
    assert served(hub_app, MODEL_ID="other/model") == "other/model"
    assert served(embed_app) == str(embed_app.parent / "model")
    assert served(embed_app, MODEL_ID="other/model") == "other/model"


def test_embed_model_copies_only_the_engine_files(tmp_path, tiny_onnx_dir):
    bundle = build_bundle(BundleOptions(model=str(tiny_onnx_dir), output_dir=tmp_path / "b",
                                        embed_model=True))
    model_files = {rel for rel, _ in bundle.files if rel.startswith("model/")}
    assert model_files == {"model/model.onnx"} | {
        f"model/{n}" for n in ENGINE_FILES + OPTIONAL_ENGINE_FILES}
    for rel in model_files:
        assert filecmp.cmp(tiny_onnx_dir / rel[len("model/"):], bundle.path / rel, shallow=False)
    assert front_matter(bundle.path / "README.md")["models"] == []


@pytest.mark.parametrize("layout", ["export", "repo"])
def test_embed_prefers_int8_and_keeps_external_data(tmp_path, layout):
    model = tmp_path / "model"
    onnx = model if layout == "export" else model / "onnx"
    onnx.mkdir(parents=True)
    for name in ("model.onnx", "model_int4.onnx", "export_report.json", "README.md",
                 *ENGINE_FILES):  # no generation_config
        (onnx / name).write_text(name)
    write_graph(onnx / "model_int8.onnx", external="model_int8.onnx_data")  # optimum's name
    (model / "model.safetensors").write_text("pytorch weights")
    bundle = build_bundle(BundleOptions(model=str(model), output_dir=tmp_path / "b",
                                        embed_model=True))
    assert {rel for rel, _ in bundle.files if rel.startswith("model/")} == {
        "model/model_int8.onnx", "model/model_int8.onnx_data",
        *(f"model/{n}" for n in ENGINE_FILES)}


def test_embed_takes_the_default_decode_graph_and_decode_json(tmp_path):
    model = tmp_path / "export"
    model.mkdir()
    for name in ("model.onnx", "model_int8.onnx", "decode_fp32.onnx", "decode_int4.onnx",
                 *ENGINE_FILES):
        (model / name).write_text(name)
    write_graph(model / "decode_int8.onnx")  # the one graph the engine loads is parsed
    (model / "decode.json").write_text(json.dumps({"format": 1, "default": "int8", "files": {
        "fp32": "decode_fp32.onnx", "int8": "decode_int8.onnx", "int4": "decode_int4.onnx"}}))
    bundle = build_bundle(BundleOptions(model=str(model), output_dir=tmp_path / "b",
                                        embed_model=True))
    assert {rel for rel, _ in bundle.files if rel.startswith("model/")} == {
        "model/decode_int8.onnx", "model/decode.json", *(f"model/{n}" for n in ENGINE_FILES)}


def test_the_bundled_demo_model_embeds_what_the_engine_loads(tmp_path):
    from generation import Engine

    bundle = build_bundle(BundleOptions(model=str(REPO_ROOT / "demo_model"),
                                        output_dir=tmp_path / "b", embed_model=True))
    engine = Engine.load(bundle.path / "model", provider="cpu")
    assert engine.info["graph"] == "decode"


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_build_prints_every_file_and_the_total(tmp_path, capsys):
    code, out, _ = run_cli(capsys, "build", "--model", HUB_ID, "--output-dir",
                           str(tmp_path / "b"))
    assert code == 0
    for path in (tmp_path / "b").rglob("*"):
        if path.is_file():
            rel = path.relative_to(tmp_path / "b").as_posix()
            assert re.search(rf"^\s+{path.stat().st_size:,}\s+{re.escape(rel)}$", out, re.M), rel
    assert "Bundle: " in out


@pytest.mark.parametrize("argv, message", [
    (["--model", "bad..id"], "--model"),
    (["--model", "{tmp}"], "--embed-model"),
    (["--model", HUB_ID, "--embed-model"], "local model directory"),
    (["--model", "{tmp}/empty", "--embed-model"], "export it first"),
    (["--model", "{tmp}/notok", "--embed-model"], "lacks tokenizer.json"),
    (["--model", HUB_ID, "--space-id", "nouser"], "USER/NAME"),
    (["--model", HUB_ID, "--title", " "], "--title"),
    (["--model", HUB_ID, "--output-dir", "{tmp}/busy"], "not empty"),
])
def test_cli_build_user_errors_exit_2(tmp_path, capsys, argv, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notok").mkdir()
    for name in ("model.onnx", "config.json"):
        (tmp_path / "notok" / name).write_text(name)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if "--output-dir" not in argv:
        argv += ["--output-dir", str(tmp_path / "out")]
    code, _, err = run_cli(capsys, "build", *argv)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"
    assert not (tmp_path / "out").exists()


def test_code_importing_what_the_space_lacks_is_refused(tmp_path, source_copy, capsys):
    root, _ = source_copy
    with open(root / "generation" / "__init__.py", "a") as f:
        f.write("from . import extra  # noqa: F401\n")
    (root / "generation" / "extra.py").write_text(
        "try:\n    import spaces\nexcept ImportError:\n    spaces = None\n\n"
        "def f():\n    import torch\n    from transformers import AutoModel\n")
    with pytest.raises(Exception, match=r"generation/extra.py imports torch, transformers$"):
        build_bundle(BundleOptions(model=HUB_ID, output_dir=tmp_path / "b", source_root=root))
    assert not (tmp_path / "b").exists()


def test_a_module_nothing_imports_stays_out(tmp_path, source_copy):
    root, code = source_copy
    (root / "generation" / "local_settings.py").write_text(f'HF_TOKEN = "{_token()}"\n')
    bundle = build_bundle(BundleOptions(model=HUB_ID, output_dir=tmp_path / "b", source_root=root))
    assert {rel for rel, _ in bundle.files} == code | {"README.md", "requirements.txt"}


def _token() -> str:
    import secrets

    return "hf_" + secrets.token_hex(17)


@pytest.mark.parametrize("stored", [True, False], ids=["stored token", "any hf_ token"])
def test_build_refuses_code_that_holds_a_token(tmp_path, source_copy, monkeypatch, stored):
    root, _ = source_copy
    token = _token()
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    if stored:
        monkeypatch.setenv("HF_TOKEN", token)
    else:
        monkeypatch.delenv("HF_TOKEN", raising=False)
    with open(root / "generation" / "__init__.py", "a") as f:
        f.write("from . import local_settings  # noqa: F401\n")
    (root / "generation" / "local_settings.py").write_text(f'TOKEN = "{token}"\n')
    with pytest.raises(UserError, match=r"^refusing to build: generation/local_settings.py "
                                        r"contains a Hugging Face token"):
        build_bundle(BundleOptions(model=HUB_ID, output_dir=tmp_path / "b", source_root=root))
    assert not (tmp_path / "b").exists()


def test_cli_build_refuses_a_bundle_holding_the_stored_token(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "onnxruntime")  # a "token" that requirements.txt holds
    code, out, err = run_cli(capsys, "build", "--model", HUB_ID, "--output-dir", str(tmp_path / "b"))
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: refusing to build: ") and "contains a Hugging Face token" in err
    assert "onnxruntime" not in err and not (tmp_path / "b").exists()
