"""Loading: directory layouts, precision choice, config, providers, the Hub, and no torch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from generation import Engine, SamplingParams
from generation.configs import default_params
from generation.files import choose_model_file, choose_onnx
from generation.runners.session import cuda_device_count
from tests.conftest import REPO_ROOT
from tests.generation.conftest import PROMPTS
from tests.generation.hub_fake import serve_repo

# Run in a fresh interpreter where torch, transformers and optimum cannot be imported.
NO_TORCH = """
import importlib.abc, json, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers", "optimum"):
            raise ImportError("blocked in this test: " + name)
sys.meta_path.insert(0, Block())
from generation import Engine, SamplingParams
engine = Engine.load(sys.argv[1], provider="cpu")
(row,) = engine.generate(sys.argv[2], [SamplingParams()], 16)
blocked = [m for m in ("torch", "transformers", "optimum") if m in sys.modules]
print(json.dumps({"info": engine.info, "token_ids": row.token_ids, "loaded": blocked}))
"""


def run_without_torch(model: str, prompt: str, env: dict | None = None) -> dict:
    result = subprocess.run([sys.executable, "-c", NO_TORCH, model, prompt], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_choose_onnx():
    files = ["model.onnx", "model_int8.onnx", "config.json"]
    assert choose_onnx(files, None) == ("model_int8.onnx", "int8")
    assert choose_onnx(files, "fp32") == ("model.onnx", "fp32")
    assert choose_onnx(["onnx/model.onnx", "model.safetensors"], None) == ("onnx/model.onnx", "fp32")
    assert choose_onnx(["onnx/model_int4.onnx"], None) == ("onnx/model_int4.onnx", "int4")
    with pytest.raises(ValueError, match=r"no int4 model \(model_int4.onnx\) found; available: int8 \(model_int8.onnx\)"):
        choose_onnx(["model_int8.onnx"], "int4")
    with pytest.raises(ValueError, match="precision must be one of fp32, int8, int4"):
        choose_onnx(files, "int3")
    with pytest.raises(ValueError, match="no ONNX model found; available: none"):
        choose_onnx(["config.json"], None)


def test_decode_json_picks_the_graph():
    meta = {"format": 1, "files": {"fp32": "decode_fp32.onnx", "int4": "decode_int4.onnx"},
            "default": "int4"}
    files = ["model.onnx", "model_int8.onnx", "decode.json", "decode_fp32.onnx", "decode_int4.onnx"]

    def pick(names, precision=None, use_decode=True, content=meta):
        return choose_model_file(names, precision, use_decode, lambda rel: content)

    assert pick(files) == ("decode_int4.onnx", "int4", meta)
    assert pick(files, "fp32") == ("decode_fp32.onnx", "fp32", meta)
    assert pick(["onnx/" + f for f in files]) == ("onnx/decode_int4.onnx", "int4", meta)
    # Without decode.json, or with the decode graph refused (CUDA): optimum's files.
    assert pick(files, use_decode=False) == ("model_int8.onnx", "int8", None)
    assert pick([f for f in files if f != "decode.json"]) == ("model_int8.onnx", "int8", None)
    with pytest.raises(ValueError, match="no ONNX model found.*CUDA needs optimum's model.onnx"):
        pick(["decode.json", "decode_int4.onnx"], use_decode=False)
    with pytest.raises(ValueError, match=r"no int8 decode graph in decode.json; available: "
                                         r"fp32 \(decode_fp32.onnx\), int4 \(decode_int4.onnx\)"):
        pick(files, "int8")
    with pytest.raises(ValueError, match="decode.json names decode_int4.onnx, which is missing"):
        pick([f for f in files if f != "decode_int4.onnx"])
    with pytest.raises(ValueError, match="decode.json has format 2"):
        pick(files, content={**meta, "format": 2})
    with pytest.raises(ValueError, match="precision must be one of"):
        pick(files, "int3")


def test_a_decode_export_loads_its_default_and_each_precision(decode_dir):
    default = Engine.load(decode_dir, provider="cpu")
    assert default.info["graph"] == "decode" and default.info["precision"] == "int4"
    assert default.info["onnx_file"] == str(decode_dir / "decode_int4.onnx")
    int8 = Engine.load(decode_dir, precision="int8", provider="cpu")
    assert int8.info["onnx_file"] == str(decode_dir / "decode_int8.onnx")
    assert int8.info["layers"] == 2


def test_a_decode_json_naming_a_non_decode_graph_is_a_clear_error(tmp_path, tiny_onnx_dir):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_onnx_dir, broken)
    (broken / "decode.json").write_text(json.dumps(
        {"format": 1, "files": {"fp32": "model.onnx"}, "default": "fp32"}))
    with pytest.raises(ValueError, match="the decode graph has no input 'seqlens_k'"):
        Engine.load(broken, provider="cpu")


def test_info_matches_the_checkpoint(engine, hf_model):
    info = engine.info
    assert info["provider"] == "cpu" and info["precision"] == "fp32"
    assert info["parameters"] == hf_model.num_parameters()
    assert (info["layers"], info["context"], info["vocab_size"]) == (2, 256, hf_model.config.vocab_size)
    assert engine.context_size == 256
    assert engine.default_params == SamplingParams()  # the fixture's generation config is greedy
    assert engine.default_max_new_tokens == 32


def test_default_params_follow_generation_config():
    assert default_params({}) == SamplingParams()
    assert default_params({"do_sample": True, "temperature": 0.7}) == SamplingParams(
        temperature=0.7, top_k=50)  # transformers' default top_k when sampling
    assert default_params({"do_sample": True, "top_k": 0, "top_p": 0.9, "repetition_penalty": 1.2}) \
        == SamplingParams(temperature=1.0, top_p=0.9, repetition_penalty=1.2)


def test_onnx_subfolder_layout_loads(tmp_path, tiny_model_dir, tiny_onnx_dir, engine):
    repo = tmp_path / "repo"
    shutil.copytree(tiny_model_dir, repo)
    shutil.copytree(tiny_onnx_dir, repo / "onnx")
    loaded = Engine.load(repo, provider="cpu")
    assert loaded.info["onnx_file"] == str(repo / "onnx" / "model.onnx")
    ours = loaded.generate(PROMPTS[1], [SamplingParams()], 12)[0].token_ids
    assert ours == engine.generate(PROMPTS[1], [SamplingParams()], 12)[0].token_ids


@pytest.mark.slow
def test_unreachable_hub_is_a_clear_error(tmp_path):
    script = ("from generation import Engine\n"
              "try:\n    Engine.load('nobody/nothing')\nexcept ValueError as e:\n    print(e)\n")
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_CACHE": str(tmp_path),
           "HF_HUB_ETAG_TIMEOUT": "2", "HF_HUB_DOWNLOAD_TIMEOUT": "2"}
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert "could not fetch 'nobody/nothing' from the Hub" in result.stdout, result.stderr[-2000:]


def test_missing_files_are_clear_errors(tmp_path, tiny_onnx_dir):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_onnx_dir, broken)
    (broken / "tokenizer.json").unlink()
    with pytest.raises(ValueError, match="tokenizer.json is missing"):
        Engine.load(broken)
    with pytest.raises(ValueError, match="neither a model directory nor a Hub repo id"):
        Engine.load(tmp_path / "absent" / "dir")
    with pytest.raises(ValueError, match="no ONNX model found"):
        Engine.load(tmp_path)
    with pytest.raises(ValueError, match="provider must be"):
        Engine.load(tiny_onnx_dir, provider="tpu")


def test_auto_provider_falls_back_to_cpu_quietly(tiny_onnx_dir, capfd):
    if cuda_device_count():
        pytest.skip("a GPU is present: auto picks CUDA here")
    assert Engine.load(tiny_onnx_dir).info["provider"] == "cpu"
    assert capfd.readouterr().err == ""
    with pytest.raises(ValueError, match="no usable CUDA GPU"):
        Engine.load(tiny_onnx_dir, provider="cuda")


def test_a_cuda_provider_that_cannot_start_falls_back_quietly(tiny_onnx_dir, monkeypatch, capfd):
    """Pretend a GPU is present: the real CUDA provider is then tried (and, here, fails)."""
    import generation.runners.session as runner

    monkeypatch.setattr(runner, "cuda_device_count", lambda: 1)
    session, used = runner.create_session(str(tiny_onnx_dir / "model.onnx"), None)
    if used == "cuda":
        pytest.skip("CUDA really works here")
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert capfd.readouterr().err == ""
    with pytest.raises(ValueError, match="no usable CUDA GPU"):
        runner.create_session(str(tiny_onnx_dir / "model.onnx"), "cuda")


@pytest.mark.slow
@pytest.mark.parametrize("which", ["decode_dir", "tiny_onnx_dir"])
def test_runs_without_torch_transformers_optimum(which, request):
    model = request.getfixturevalue(which)
    out = run_without_torch(str(model), PROMPTS[3])
    assert out["loaded"] == []
    assert out["info"]["graph"] == ("decode" if which == "decode_dir" else "optimum")
    here = Engine.load(model, provider="cpu")
    assert out["token_ids"] == here.generate(PROMPTS[3], [SamplingParams()], 16)[0].token_ids


def load_from_fake_hub(tmp_path, repo_id: str, model_dir, onnx_dir) -> tuple[dict, set[str], dict]:
    """Serve model_dir (PyTorch weights at the root) + onnx_dir (in onnx/) as a Hub repo and
    load it in a torch-free interpreter. Returns (its output, the files fetched, the env)."""
    repo = tmp_path / "repo"
    shutil.copytree(model_dir, repo)
    shutil.copytree(onnx_dir, repo / "onnx")
    server, requested = serve_repo(repo_id, repo)
    try:
        # Online first, whatever the caller's environment says (offline users export HF_HUB_OFFLINE=1).
        env = {"HF_ENDPOINT": f"http://127.0.0.1:{server.server_port}",
               "HF_HUB_CACHE": str(tmp_path / "cache"), "HF_HUB_DISABLE_TELEMETRY": "1",
               "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_OFFLINE": "0"}
        out = run_without_torch(repo_id, PROMPTS[0], env)
    finally:
        server.shutdown()
    fetched = {p.split("/resolve/", 1)[1].split("/", 1)[1] for p in requested if "/resolve/" in p}
    return out, fetched, env


@pytest.mark.slow
def test_hub_repo_id_downloads_only_what_it_needs(tmp_path, tiny_model_dir, int8_onnx_dir):
    out, fetched, env = load_from_fake_hub(tmp_path, "someone/tiny-neo", tiny_model_dir, int8_onnx_dir)
    # Later, offline (or with the Hub down): the cached snapshot is used.
    offline = run_without_torch("someone/tiny-neo", PROMPTS[0], {**env, "HF_HUB_OFFLINE": "1"})
    assert offline["token_ids"] == out["token_ids"]
    assert out["info"]["precision"] == "int8"
    assert out["info"]["onnx_file"].endswith("onnx/model_int8.onnx")
    assert "onnx/model_int8.onnx" in fetched and "onnx/tokenizer.json" in fetched
    assert not {"onnx/model.onnx", "model.safetensors"} & fetched
    int8 = Engine.load(int8_onnx_dir, provider="cpu")
    assert out["token_ids"] == int8.generate(PROMPTS[0], [SamplingParams()], 16)[0].token_ids


@pytest.mark.slow
def test_hub_repo_with_a_decode_graph_downloads_only_that_graph(tmp_path, tiny_model_dir, decode_dir):
    out, fetched, _ = load_from_fake_hub(tmp_path, "someone/tiny-neo-decode", tiny_model_dir, decode_dir)
    assert out["info"]["graph"] == "decode" and out["info"]["precision"] == "int4"
    assert {"onnx/decode.json", "onnx/decode_int4.onnx", "onnx/tokenizer.json"} <= fetched
    assert not {"onnx/model.onnx", "onnx/decode_fp32.onnx", "onnx/decode_int8.onnx",
                "model.safetensors"} & fetched
    local = Engine.load(decode_dir, provider="cpu")
    assert out["token_ids"] == local.generate(PROMPTS[0], [SamplingParams()], 16)[0].token_ids


@pytest.mark.slow
def test_the_hub_test_also_passes_in_the_other_offline_mode():
    """Users who work offline export HF_HUB_OFFLINE=1 (and TRANSFORMERS_OFFLINE=1): the suite
    must pass for them too. The Hub test above runs in this process's mode; here it runs again
    in the other one, so every run of the suite covers both."""
    offline_here = os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    if not offline_here:
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    test = "tests/generation/test_model.py::test_hub_repo_id_downloads_only_what_it_needs"
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and "1 passed" in result.stdout, result.stdout[-3000:]
