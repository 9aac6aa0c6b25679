"""Quantizing the fp32 export: dynamic int8 (optimum's ORTQuantizer) and int4 weight-only
(onnxruntime's MatMulNBits quantizer).

Two choices are made here on purpose:
- Only MatMuls whose right operand is a weight are quantized. The attention products
  (Q·Kᵀ and probs·V) multiply two activations; quantizing them costs accuracy and buys little.
- optimum ties `lm_head` to the embedding through a `Transpose` node, so the biggest MatMul
  (hidden × vocab) has no initializer and the quantizers skip it (int8 would even quantize it
  again on every step). `untie_transposed_weights` folds such transposes into initializers
  first; the quantized files are then smaller and faster, and the fp32 file is left as is.
"""

from __future__ import annotations

import platform
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

QUANTIZED_OPS = ("MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
                 "QLinearMatMul", "MatMulNBits", "GatherBlockQuantized")
ISAS = ("avx512_vnni", "avx512", "avx2", "arm64")


def cpu_isa(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The best optimum `AutoQuantizationConfig` preset for this CPU.

    Args:
        cpuinfo: the file whose `flags` line is read (Linux).

    Returns:
        One of "avx512_vnni", "avx512", "avx2", "arm64" (avx2 when nothing is known).
    """
    if platform.machine().lower() in ("arm64", "aarch64"):
        return "arm64"
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return "avx2"
    flags = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[1].split())
            break
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags and "avx512bw" in flags:
        return "avx512"
    return "avx2"


def untie_transposed_weights(model: onnx.ModelProto) -> int:
    """Replace `Transpose(initializer)` nodes by a transposed initializer, in place.

    Returns:
        How many transposes were folded.
    """
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    folded = []
    for node in graph.node:
        if node.op_type != "Transpose" or node.input[0] not in inits:
            continue
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
        weight = numpy_helper.to_array(inits[node.input[0]])
        transposed = np.ascontiguousarray(np.transpose(weight, perm))
        graph.initializer.append(numpy_helper.from_array(transposed, node.output[0]))
        folded.append(node)
    for node in folded:
        graph.node.remove(node)
    return len(folded)


def weight_matmuls(model: onnx.ModelProto) -> list[str]:
    """Names of the MatMul nodes whose second input is an initializer (a weight)."""
    inits = {i.name for i in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in inits]


def count_ops(path: str | Path) -> Counter:
    """Count the node types of an ONNX file (top-level graph)."""
    model = onnx.load(str(path), load_external_data=False)
    return Counter(node.op_type for node in model.graph.node)


def quantize_int8(fp32_path: Path, out_path: Path, isa: str | None = None) -> dict:
    """Dynamic int8 quantization of the weight MatMuls with optimum's ORTQuantizer.

    Args:
        fp32_path: the exported `model.onnx`.
        out_path: where to write the int8 file (e.g. `model_int8.onnx`).
        isa: an `AutoQuantizationConfig` preset name; None detects it from the CPU.

    Returns:
        What was done: {"isa", "config", "nodes", "untied"}.
    """
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig
    from transformers import AutoConfig

    isa = isa or cpu_isa()
    model = onnx.load(str(fp32_path))
    untied = untie_transposed_weights(model)
    nodes = weight_matmuls(model)
    config = getattr(AutoQuantizationConfig, isa)(
        is_static=False, per_channel=True, nodes_to_quantize=nodes, operators_to_quantize=["MatMul"])
    with tempfile.TemporaryDirectory() as tmp:
        untied_path = Path(tmp) / "model.onnx"
        onnx.save(model, str(untied_path))
        del model
        quantizer = ORTQuantizer(untied_path, config=AutoConfig.from_pretrained(fp32_path.parent))
        quantizer.quantize(config, save_dir=Path(tmp) / "q", file_suffix="int8")
        shutil.move(str(Path(tmp) / "q" / "model_int8.onnx"), out_path)
    return {"isa": isa, "config": str(config), "nodes": len(nodes), "untied": untied}


def quantize_int4(fp32_path: Path, out_path: Path, block_size: int = 32,
                  accuracy_level: int = 4, embeddings: bool = False) -> dict:
    """Weight-only 4-bit (symmetric, blockwise) MatMulNBits quantization of the weight MatMuls.

    Args:
        fp32_path: the exported `model.onnx`.
        out_path: where to write the int4 file (e.g. `model_int4.onnx`).
        block_size: weights per quantization block along K (power of two >= 16; a K smaller
            than the block is padded by the quantizer).
        accuracy_level: MatMulNBits compute type (4: int8 activations, fastest on x86/arm64;
            0: unset; 1: fp32).
        embeddings: also quantize the token/position embedding tables (Gather →
            GatherBlockQuantized, 4-bit along the hidden axis): a much smaller file (the fp32
            50257 × 768 table is most of the int4 file), at some cost in accuracy.

    Returns:
        What was done: {"block_size", "accuracy_level", "nodes", "untied"}.
    """
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    model = onnx.load(str(fp32_path))
    untied = untie_transposed_weights(model)
    nodes = weight_matmuls(model)
    op_types = ("MatMul",)
    if embeddings:
        inits = {i.name for i in model.graph.initializer}
        nodes += [n.name for n in model.graph.node if n.op_type == "Gather" and n.input[0] in inits]
        op_types = ("MatMul", "Gather")
    quantizer = MatMulNBitsQuantizer(model, bits=4, block_size=block_size, is_symmetric=True,
                                     accuracy_level=accuracy_level, nodes_to_include=nodes,
                                     op_types_to_quantize=op_types)
    quantizer.process()
    quantizer.model.save_model_to_file(str(out_path), use_external_data_format=False)
    return {"block_size": block_size, "accuracy_level": accuracy_level, "nodes": len(nodes),
            "untied": untied, "embeddings": embeddings}
