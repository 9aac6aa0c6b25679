"""ONNX Runtime sessions as the engine opens them (the export's gates open theirs here too)."""

from __future__ import annotations

import ctypes
import os

import onnxruntime as ort


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def cuda_device_count() -> int:
    """GPUs the CUDA driver sees (0 without a driver). onnxruntime-gpu lists its CUDA provider
    even on machines without a GPU, so the provider list alone proves nothing."""
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return 0
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        if lib.cuInit(0) == 0 and lib.cuDeviceGetCount(ctypes.byref(count)) == 0:
            return count.value
        return 0
    return 0


def create_session(path: str, provider: str | None = "cpu", threads: int | None = None,
                   profile_prefix: str | None = None) -> tuple[ort.InferenceSession, str]:
    """An inference session on CUDA when asked for (or, with None, when a GPU works), else CPU.

    Args:
        path: the ONNX file.
        provider: "cpu", "cuda", or None for automatic.
        threads: intra-op threads (None: the cores this process may run on).
        profile_prefix: turn ONNX Runtime's profiler on, writing `{prefix}_<time>.json`
            (bench/profile_step.py); None: off.

    Returns:
        (session, "cuda" or "cpu": the provider that really runs it).

    Raises:
        ValueError: an unknown provider, or "cuda" where no GPU is usable.
    """
    if provider not in (None, "cpu", "cuda"):
        raise ValueError(f"provider must be 'cpu', 'cuda' or None (auto), got {provider!r}")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = available_cores() if threads is None else threads
    options.inter_op_num_threads = 1
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    # Worker threads spin between ops (ONNX Runtime's default): on an idle 2-core box that is
    # 118 vs 87 tok/s for the 125M int8 model at batch 1. Where the CPU is shared with other
    # busy processes spinning steals their cores (57 vs 31 ms/step seen under load):
    # GENERATION_ORT_SPINNING=0 makes idle threads sleep instead.
    spinning = os.environ.get("GENERATION_ORT_SPINNING", "1") != "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if provider != "cpu" and cuda_device_count() > 0:
        # A CUDA provider that cannot start (missing CUDA/cuDNN libraries) logs errors through
        # the default logger and leaves only the CPU provider: fall back quietly.
        ort.set_default_logger_severity(4)
        try:
            session = ort.InferenceSession(
                path, options, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
        finally:
            ort.set_default_logger_severity(2)
        if "CUDAExecutionProvider" in session.get_providers():
            return session, "cuda"
    if provider == "cuda":
        raise ValueError("provider 'cuda' was requested but no usable CUDA GPU was found")
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"]), "cpu"
