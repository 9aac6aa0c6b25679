"""The memory floor of a decode step: weight bytes read per step ÷ the machine's read bandwidth.

At batch 1 a decode step multiplies one activation row by every weight matrix, so it must
read every weight byte once; no kernel can be faster than that read. The bandwidth is the
higher of two measurements with every core busy:

- a streaming read: every core sums its own slice of a buffer many times larger than the
  last-level cache (numpy's reductions release the GIL, so threads really run in parallel);
- an fp32 matrix-vector product over a ≥ 400 MB matrix in ONNX Runtime (the runtime and the
  access pattern of a decode step).

What counts as read per step: every initializer of the graph, except the tables a `Gather`
indexes (the token and position embeddings), of which only the looked-up rows are read.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import numpy as np

from generation.runners.session import available_cores

GIB = 1 << 30


def last_level_cache_bytes() -> int:
    """The largest CPU cache (from sysfs), or 32 MiB when it cannot be read."""
    sizes = []
    for path in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        match = re.fullmatch(r"(\d+)([KMG]?)", path.read_text().strip())
        if match:
            sizes.append(int(match[1]) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": GIB}[match[2]])
    return max(sizes, default=32 << 20)


def streaming_read_gbs(buffer_bytes: int, repeats: int = 5) -> float:
    """GB/s of every core summing its own slice of one large float32 buffer (best of repeats)."""
    data = np.ones(buffer_bytes // 4, dtype=np.float32)  # touched: pages really allocated
    slices = np.array_split(data, available_cores())
    best = 0.0
    for _ in range(repeats):
        threads = [threading.Thread(target=np.add.reduce, args=(s,)) for s in slices]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        best = max(best, data.nbytes / (time.perf_counter() - start) / 1e9)
    del data
    return best


def matvec_gbs(matrix_bytes: int, repeats: int = 10) -> float:
    """GB/s of ONNX Runtime's fp32 vector × matrix product over one large matrix (best run)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    k = 4096
    n = matrix_bytes // (4 * k)
    weight = np.random.default_rng(0).standard_normal((k, n), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "matvec",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])],
        [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    options = ort.SessionOptions()
    options.intra_op_num_threads = available_cores()
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    del model, graph
    x = np.ones((1, k), dtype=np.float32)
    session.run(None, {"x": x})
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, {"x": x})
        best = max(best, weight.nbytes / (time.perf_counter() - start) / 1e9)
    return best


def read_bandwidth(buffer_bytes: int | None = None) -> dict:
    """Both bandwidth measurements and the higher one, in GB/s (10^9 bytes per second).

    Args:
        buffer_bytes: the streaming buffer; default max(2 GiB, 4 × the last-level cache). The
            matrix is max(512 MiB, 2 × the last-level cache), so neither fits in a cache.
    """
    llc = last_level_cache_bytes()
    size = buffer_bytes or max(2 * GIB, 4 * llc)
    stream = streaming_read_gbs(size)
    matvec = matvec_gbs(max(512 << 20, 2 * llc))
    return {"streaming_read_gbs": round(stream, 2), "streaming_buffer_bytes": size,
            "last_level_cache_bytes": llc, "fp32_matvec_gbs": round(matvec, 2),
            "fp32_matvec_matrix_bytes": max(512 << 20, 2 * llc),
            "bandwidth_gbs": round(max(stream, matvec), 2), "cores": available_cores()}


def weight_bytes_per_step(onnx_path: str | Path, batch: int = 1) -> dict:
    """Bytes of weights one decode step reads, from the graph's initializers.

    Returns:
        {"total": bytes read, "gathered_tables": their full size (not all read), "dense": the
        rest}. A Gather table counts `batch` rows.
    """
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=True)
    graph = model.graph
    tables = {n.input[0] for n in graph.node if n.op_type in ("Gather", "GatherBlockQuantized")}
    dense = gathered_rows = full_tables = 0
    for init in graph.initializer:
        nbytes = onnx.numpy_helper.to_array(init).nbytes
        if init.name in tables and len(init.dims) >= 2:
            full_tables += nbytes
            gathered_rows += batch * nbytes // init.dims[0]
        else:
            dense += nbytes
    return {"total": dense + gathered_rows, "dense": dense, "gathered_tables": full_tables}
