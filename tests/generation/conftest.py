"""Fixtures of the generation tests: engines on the tiny exported model (fp32 and int8)."""

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


@pytest.fixture(scope="session")
def engine(tiny_onnx_dir) -> Engine:
    """The fp32 tiny model on the CPU."""
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
