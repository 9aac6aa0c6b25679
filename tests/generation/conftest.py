"""Fixtures of the generation tests: engines on the tiny exported model (the decode graph at
fp32/int8/int4, and optimum's graph alone)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from generation import Engine

# Prompts written for these tests; the last is longer than the tiny model's window of 8.
PROMPTS = [
    "We propose",
    "The attention mechanism",
    "Über-fast décodage: 数学 🚀",
    "In this paper we study the complexity of scheduling problems with deadlines and show",
]


DECODE_PRECISIONS = ("fp32", "int8", "int4")


def write_decode_dir(out: Path, model_dir: Path, onnx_dir: Path, window_cache: bool,
                     prefill: str | None = None) -> Path:
    """The tiny export (optimum's model.onnx) plus decode graphs at every precision and
    decode.json, written by export's own functions (without its gate, to stay fast); with
    `prefill` (a kind of export.decode.prefill), its prefill graph paired with int4."""
    from export.decode.checkpoint import read_checkpoint
    from export.decode.files import decode_manifest, write_decode_graphs, write_manifest
    from export.decode.prefill import write_prefill_graph

    for item in onnx_dir.iterdir():
        if item.is_file():
            shutil.copy(item, out / item.name)
    config, weights = read_checkpoint(model_dir)
    blocks = {"int8": 16, "int4": 16}  # the tiny model is 32 wide
    files = write_decode_graphs(config, weights, out, DECODE_PRECISIONS, blocks, window_cache)
    manifest = decode_manifest(config, files, "int4", None, blocks, window_cache)
    if prefill is not None:
        path = write_prefill_graph(config, weights, out, prefill, blocks["int4"], window_cache)
        manifest["prefill"] = {"int4": {"file": path.name, "kind": prefill, "gate": None}}
    write_manifest(out, manifest)
    return out


@pytest.fixture(scope="session")
def decode_dir(tmp_path_factory, tiny_model_dir, tiny_onnx_dir) -> Path:
    """Decode graphs whose caches all grow with the slot (see `write_decode_dir`)."""
    return write_decode_dir(tmp_path_factory.mktemp("tiny_decode"), tiny_model_dir, tiny_onnx_dir,
                            window_cache=False)


@pytest.fixture(scope="session")
def window_dir(tmp_path_factory, tiny_model_dir, tiny_onnx_dir) -> Path:
    """Decode graphs whose local layer keeps only its window of 8 in the cache (--window-cache)."""
    return write_decode_dir(tmp_path_factory.mktemp("tiny_window"), tiny_model_dir, tiny_onnx_dir,
                            window_cache=True)


@pytest.fixture(scope="session")
def engine(decode_dir) -> Engine:
    """The tiny model's fp32 decode graph on the CPU."""
    return Engine.load(decode_dir, precision="fp32", provider="cpu")


@pytest.fixture(scope="session")
def window_engine(window_dir) -> Engine:
    """The tiny model's fp32 window-cache decode graph on the CPU."""
    return Engine.load(window_dir, precision="fp32", provider="cpu")


@pytest.fixture(scope="session")
def optimum_engine(tiny_onnx_dir) -> Engine:
    """The tiny model through optimum's fp32 graph alone (a repo without a decode graph)."""
    return Engine.load(tiny_onnx_dir, provider="cpu")


@pytest.fixture(scope="session")
def int8_onnx_dir(tmp_path_factory, tiny_onnx_dir) -> Path:
    """A copy of the tiny export with a dynamically quantized model_int8.onnx beside model.onnx."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = tmp_path_factory.mktemp("tiny_onnx_int8")
    for item in tiny_onnx_dir.iterdir():
        if item.is_file():
            shutil.copy(item, out / item.name)
    quantize_dynamic(str(out / "model.onnx"), str(out / "model_int8.onnx"),
                     weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
    return out


@pytest.fixture(scope="session")
def hf_model(tiny_model_dir):
    """The PyTorch reference: the same checkpoint through transformers."""
    from transformers import GPTNeoForCausalLM

    return GPTNeoForCausalLM.from_pretrained(tiny_model_dir).eval()
