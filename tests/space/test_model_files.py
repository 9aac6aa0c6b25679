"""`--embed-model`: which model files go into the bundle, where symlinks may lead, how big the
bundle may be, and that a huge file is never read whole."""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import space.sizes
from space.bundle import BundleOptions, build_bundle
from space.cli import main
from space.errors import UserError
from tests.conftest import REPO_ROOT
from tests.space.conftest import RecordingHub, decode_export, write_graph


def _build(model: Path, out: Path):
    return build_bundle(BundleOptions(model=str(model), output_dir=out, embed_model=True))


def _model_files(bundle) -> set[str]:
    return {rel for rel, _ in bundle.files if rel.startswith("model/")}


@pytest.fixture
def secret(tmp_path) -> Path:
    """A file outside every model directory, standing in for /etc/passwd."""
    path = tmp_path / "elsewhere" / "passwd"
    path.parent.mkdir()
    path.write_text("root:x:0:0:root:/root:/bin/bash\n")
    return path


@pytest.mark.parametrize("name", ["config.json", "tokenizer.json", "decode.json",
                                  "decode_int4.onnx"])
def test_a_symlink_out_of_the_model_dir_is_refused(tmp_path, capsys, secret, name):
    model = decode_export(tmp_path / "export")
    target = secret
    if name.endswith(".onnx"):  # a valid graph, so only where it lives is wrong
        target = write_graph(secret.parent / "stolen.onnx")
    if name == "decode.json":
        target = secret.parent / "decode.json"
        shutil.copy(model / name, target)
    (model / name).unlink()
    (model / name).symlink_to(target)
    with pytest.raises(UserError) as info:
        _build(model, tmp_path / "b")
    message = str(info.value)
    assert name in message and str(target) in message and "\n" not in message, message
    assert not (tmp_path / "b").exists()
    code = main(["build", "--model", str(model), "--embed-model", "--output-dir",
                 str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and str(target) in err
    assert not (tmp_path / "c").exists()


def test_deploy_refuses_a_symlink_out_before_any_upload(tmp_path, capsys, monkeypatch, secret):
    model = decode_export(tmp_path / "export")
    (model / "config.json").unlink()
    (model / "config.json").symlink_to(secret)
    hubs: list[RecordingHub] = []
    monkeypatch.setattr("space.deploy.default_hub_factory",
                        lambda token: hubs.append(RecordingHub(token)) or hubs[-1])
    monkeypatch.setattr("space.deploy.stored_token", lambda: "hf_" + "x" * 34)
    code = main(["deploy", "--space-id", "user/demo", "--model", str(model), "--embed-model"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and str(secret) in err
    assert hubs == [] or all(h.uploaded == {} for h in hubs)


def test_a_symlinked_onnx_folder_leading_out_is_refused(tmp_path, secret):
    model = tmp_path / "repo"
    model.mkdir()
    decode_export(secret.parent / "onnx")
    (model / "onnx").symlink_to(secret.parent / "onnx")
    with pytest.raises(UserError, match="outside"):
        _build(model, tmp_path / "b")


def _hub_cache(root: Path, source: Path, repo: str = "models--user--demo") -> Path:
    """huggingface_hub's cache layout: snapshots/<rev>/FILE -> ../../blobs/<sha>."""
    blobs = root / repo / "blobs"
    snapshot = root / repo / "snapshots" / "0123abcd"
    blobs.mkdir(parents=True)
    snapshot.mkdir(parents=True)
    (root / repo / "refs").mkdir()
    (root / repo / "refs" / "main").write_text("0123abcd")
    for i, path in enumerate(sorted(source.iterdir())):
        blob = blobs / f"{i:064x}"
        shutil.copy(path, blob)
        (snapshot / path.name).symlink_to(Path("..", "..", "blobs", blob.name))
    return snapshot


def test_a_hub_cache_snapshot_and_links_inside_the_model_dir_are_followed(tmp_path,
                                                                          tiny_onnx_dir):
    snapshot = _hub_cache(tmp_path / "hub", tiny_onnx_dir)
    bundle = _build(snapshot, tmp_path / "b")
    assert "model/model.onnx" in _model_files(bundle)
    for rel in _model_files(bundle):
        assert filecmp.cmp(tiny_onnx_dir / rel[len("model/"):], bundle.path / rel, shallow=False)
        assert not (bundle.path / rel).is_symlink()
    # A link to another file of the same model directory is fine too.
    local = decode_export(tmp_path / "export")
    (local / "real").mkdir()
    (local / "config.json").rename(local / "real" / "config.json")
    (local / "config.json").symlink_to(Path("real", "config.json"))
    assert "model/config.json" in _model_files(_build(local, tmp_path / "c"))


def test_a_snapshot_link_into_another_cached_repo_is_refused(tmp_path, tiny_onnx_dir):
    snapshot = _hub_cache(tmp_path / "hub", tiny_onnx_dir)
    other = _hub_cache(tmp_path / "hub", tiny_onnx_dir, repo="models--someone--else")
    stolen = (other / "config.json").resolve()
    (snapshot / "config.json").unlink()
    (snapshot / "config.json").symlink_to(stolen)
    with pytest.raises(UserError, match="config.json") as info:
        _build(snapshot, tmp_path / "b")
    assert str(stolen) in str(info.value)


def test_external_data_is_bundled_only_when_the_graph_uses_it(tmp_path):
    unused = decode_export(tmp_path / "internal")
    (unused / "decode_int4.onnx.data").write_bytes(b"")
    os.truncate(unused / "decode_int4.onnx.data", 2**31)  # a stray 2 GiB sparse file beside it
    assert _model_files(_build(unused, tmp_path / "b1")) == {
        "model/decode_int4.onnx", "model/decode.json", "model/config.json", "model/tokenizer.json"}
    used = decode_export(tmp_path / "external")
    write_graph(used / "decode_int4.onnx", external="decode_int4.onnx.data")
    bundle = _build(used, tmp_path / "b2")
    assert "model/decode_int4.onnx.data" in _model_files(bundle)
    import onnxruntime as ort

    session = ort.InferenceSession(str(bundle.path / "model" / "decode_int4.onnx"))
    assert session.run(None, {})[0].tolist() == [0.0, 1.0, 2.0, 3.0]


def test_a_graph_naming_missing_or_outside_external_data_is_refused(tmp_path):
    model = decode_export(tmp_path / "export")
    write_graph(model / "decode_int4.onnx", external="weights.bin")
    (model / "weights.bin").unlink()
    with pytest.raises(UserError, match="weights.bin"):
        _build(model, tmp_path / "b")


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc")
def test_a_2gib_external_data_file_is_scanned_in_chunks_and_copied_sparse(tmp_path):
    """Peak RSS of the build (a subprocess) stays far below the file's size; the copy keeps
    the holes; the CLI warns, with the numbers, that the bundle is over a Space's soft limit."""
    model = decode_export(tmp_path / "export")
    write_graph(model / "decode_int4.onnx", external="decode_int4.onnx.data")
    os.truncate(model / "decode_int4.onnx.data", 2**31)
    out = tmp_path / "b"
    # VmHWM: the peak RSS of this process image (ru_maxrss would keep pytest's own peak
    # across the fork and exec that started it).
    script = ("import re, sys\nfrom space.cli import main\ncode = main(sys.argv[1:])\n"
              "status = open('/proc/self/status').read()\n"
              "print('peak_rss_kb', re.search(r'VmHWM:\\s+(\\d+)', status).group(1))\n"
              "sys.exit(code)\n")
    done = subprocess.run([sys.executable, "-c", script, "build", "--model", str(model),
                           "--embed-model", "--output-dir", str(out)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    peak_mb = int(done.stdout.split("peak_rss_kb")[1]) / 1024
    assert peak_mb < 400, f"peak RSS {peak_mb:.0f} MB for a 2048 MiB file"
    copied = out / "model" / "decode_int4.onnx.data"
    assert copied.stat().st_size == 2**31 and copied.stat().st_blocks * 512 <= 4 * 2**20
    assert "warning: the bundle is 2.0 GiB" in done.stderr and "1.0 GiB" in done.stderr


def test_a_file_over_the_hubs_50_gb_limit_is_refused_before_copying(tmp_path, capsys):
    model = decode_export(tmp_path / "export")
    write_graph(model / "decode_int4.onnx", external="decode_int4.onnx.data")
    os.truncate(model / "decode_int4.onnx.data", 51 * 10**9)  # sparse: costs no disk
    code = main(["build", "--model", str(model), "--embed-model", "--output-dir",
                 str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "decode_int4.onnx.data" in err and "51.0 GB" in err and "50.0 GB" in err, err
    assert not (tmp_path / "b").exists()


def test_size_limits_come_from_one_table(monkeypatch, tmp_path):
    """Refusal and warning thresholds are the constants in space/sizes.py (cited there)."""
    model = decode_export(tmp_path / "export")
    monkeypatch.setattr(space.sizes, "SPACE_SOFT_LIMIT", 100)
    bundle = _build(model, tmp_path / "b")
    assert any("soft limit" in w for w in bundle.warnings)
    monkeypatch.setattr(space.sizes, "HUB_FILE_LIMIT", 10)
    with pytest.raises(UserError, match="over the Hub's"):
        _build(model, tmp_path / "c")
    assert json.loads((model / "decode.json").read_text())["default"] == "int4"
