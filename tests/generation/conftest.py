"""Fixtures of the generation tests: engines on the tiny exported model (the decode graph at
fp32/int8/int4, and optimum's graph alone)."""

from __future__ import annotations

import json
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


@pytest.fixture(scope="session")
def decode_dir(tmp_path_factory, tiny_model_dir, tiny_onnx_dir) -> Path:
    """The tiny export (optimum's model.onnx) plus decode graphs at every precision and
    decode.json, built by export's decode-graph builder."""
    from export.decode_config import DecodeConfig, load_weights
    from export.decode_graph import build_decode_graph

    out = tmp_path_factory.mktemp("tiny_decode")
    for item in tiny_onnx_dir.iterdir():
        if item.is_file():
            shutil.copy(item, out / item.name)
    config, weights = DecodeConfig.from_dir(tiny_model_dir), load_weights(tiny_model_dir)
    files = {}
    for precision in DECODE_PRECISIONS:
        files[precision] = f"decode_{precision}.onnx"
        model = build_decode_graph(config, weights, precision, block_size=16)
        (out / files[precision]).write_bytes(model.SerializeToString())
    meta = {"format": 1, "files": files, "default": "int4", "layers": config.layers,
            "heads": config.heads, "head_dim": config.head_dim, "windows": list(config.windows),
            "vocab_size": config.vocab_size, "context": config.context, "gate": {}}
    (out / "decode.json").write_text(json.dumps(meta))
    return out


@pytest.fixture(scope="session")
def engine(decode_dir) -> Engine:
    """The tiny model's fp32 decode graph on the CPU."""
    return Engine.load(decode_dir, precision="fp32", provider="cpu")


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
