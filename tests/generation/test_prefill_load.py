"""The engine loads decode.json's prefill graph when there is one, and works without it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from generation import Engine, SamplingParams
from tests.generation.conftest import write_decode_dir


@pytest.fixture(scope="module")
def prefill_dir(tmp_path_factory, tiny_model_dir, tiny_onnx_dir) -> Path:
    out = tmp_path_factory.mktemp("tiny_prefill")
    return write_decode_dir(out, tiny_model_dir, tiny_onnx_dir, True, "int4-fp32")


def copy_with(src: Path, out: Path, edit) -> Path:
    """`src` copied to `out` with decode.json's content changed by `edit(meta)`."""
    shutil.copytree(src, out)
    meta = json.loads((out / "decode.json").read_text())
    edit(meta)
    (out / "decode.json").write_text(json.dumps(meta))
    return out


def test_an_old_decode_json_without_prefill_prefills_with_the_decode_graph(decode_dir):
    engine = Engine.load(decode_dir, precision="int4", provider="cpu")
    assert engine.info["prefill_file"] is None
    assert engine.runner.prefill_session is engine.runner.session


def test_the_prefill_graph_prefills_and_the_decode_graph_steps(prefill_dir):
    engine = Engine.load(prefill_dir, precision="int4", provider="cpu")
    assert Path(engine.info["prefill_file"]).name == "prefill_int4_fp32.onnx"
    assert engine.runner.prefill_session is not engine.runner.session
    calls = []
    real = engine.runner.prefill_session.run_with_iobinding
    engine.runner.prefill_session.run_with_iobinding = lambda b: (calls.append(1), real(b))[1]
    rows = engine.generate("We propose", [SamplingParams()], 8)
    assert calls and len(rows[0].token_ids) >= 1


def test_other_precisions_have_no_prefill_graph(prefill_dir):
    engine = Engine.load(prefill_dir, precision="fp32", provider="cpu")
    assert engine.info["prefill_file"] is None


def test_a_missing_prefill_file_falls_back_to_the_decode_graph(prefill_dir, tmp_path):
    out = copy_with(prefill_dir, tmp_path / "m", lambda meta: None)
    (out / "prefill_int4_fp32.onnx").unlink()
    engine = Engine.load(out, precision="int4", provider="cpu")
    assert engine.info["prefill_file"] is None


def test_a_malformed_prefill_entry_is_one_clear_error(prefill_dir, tmp_path):
    out = copy_with(prefill_dir, tmp_path / "m", lambda meta: meta.update(prefill={"int4": 3}))
    with pytest.raises(ValueError, match="prefill entry"):
        Engine.load(out, precision="int4", provider="cpu")
