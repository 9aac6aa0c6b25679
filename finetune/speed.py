"""Throughput and MFU (model FLOPs utilization) logged with the loss.

FLOPs per trained token (forward + backward = 3 x forward, PaLM appendix B / nanoGPT):

    6 * N  +  12 * d_model * sum over layers of T_attn

N counts every weight matrix a token passes through: all parameters except the position
embeddings (the token embedding is tied to the LM head, so it is the head's matmul). The
attention term is QK^T and AV (2 matmuls x 2 FLOPs x d_model x T_attn per token forward),
with T_attn = block size for global layers and min(window, block size) for local ones: the
useful work. (transformers' GPT-Neo computes the full block and masks the local layers, so
the hardware does somewhat more than this.)
"""

from __future__ import annotations

import time

from transformers import TrainerCallback

# Dense bf16 tensor-core peaks (TFLOP/s), from NVIDIA's data sheets; matched on device name.
_PEAK_BF16_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("GH200", 989.0),
                     ("A100", 312.0), ("L40S", 362.0), ("L4", 121.0))


def flops_per_token(model, block_size: int) -> float:
    """Training FLOPs per token of a GPT-Neo model (see the module docstring)."""
    config = model.config
    n = sum(p.numel() for name, p in model.named_parameters() if "wpe" not in name)
    spans = [block_size if kind == "global" else min(config.window_size, block_size)
             for kind in config.attention_layers]
    return 6.0 * n + 12.0 * config.hidden_size * sum(spans)


def peak_flops(device_name: str | None, bf16: bool, override_tflops: float | None) -> float | None:
    """Peak FLOP/s of one device: the override, else a known GPU in bf16, else None."""
    if override_tflops:
        return override_tflops * 1e12
    if not bf16 or not device_name:
        return None
    for key, tflops in _PEAK_BF16_TFLOPS:
        if key in device_name:
            return tflops * 1e12
    return None


class SpeedCallback(TrainerCallback):
    """Adds `tokens_per_s`, `tflops` and (with a known peak) `mfu` to each training log.

    The clock runs from the first step after a log to the next training log (whose loss
    `.item()` has synchronized the device), minus time spent in evaluation and saving.
    Tokens are Trainer's `num_input_tokens_seen` (gathered over all processes), so the
    figures are for the whole job; MFU divides by the peak of all devices.
    """

    def __init__(self, flops_per_token: float, peak_flops_per_device: float | None,
                 world_size: int = 1):
        self.flops_per_token = flops_per_token
        self.peak = peak_flops_per_device * world_size if peak_flops_per_device else None
        self._start: float | None = None
        self._paused = 0.0
        self._last_step_end = 0.0
        self._tokens_at_start = 0
        self.total_tokens = 0  # over every logged interval of this run
        self.total_seconds = 0.0

    @property
    def mean_tokens_per_s(self) -> float:
        """Training throughput over all logged intervals (evaluation and saving excluded)."""
        return self.total_tokens / self.total_seconds if self.total_seconds else 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self._tokens_at_start = state.num_input_tokens_seen  # nonzero when resuming

    def on_step_begin(self, args, state, control, **kwargs):
        # Trainer counts a step's input tokens before this call, so token counts are taken
        # at logs (interval ends), never here.
        if self._start is None:
            self._start = time.perf_counter()
            self._paused = 0.0

    def on_step_end(self, args, state, control, **kwargs):
        self._last_step_end = time.perf_counter()

    def _pause(self):
        now = time.perf_counter()
        if self._start is not None:
            self._paused += now - self._last_step_end
        self._last_step_end = now

    def on_evaluate(self, args, state, control, **kwargs):
        self._pause()

    def on_save(self, args, state, control, **kwargs):
        self._pause()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or "loss" not in logs or self._start is None:
            return
        elapsed = time.perf_counter() - self._start - self._paused
        tokens = state.num_input_tokens_seen - self._tokens_at_start
        self._tokens_at_start = state.num_input_tokens_seen
        self._start = None
        if elapsed <= 0 or tokens <= 0:
            return
        rate = tokens / elapsed
        self.total_tokens += tokens
        self.total_seconds += elapsed
        extra = {"tokens_per_s": round(rate, 1),
                 "tflops": round(rate * self.flops_per_token / 1e12, 4)}
        if self.peak:
            extra["mfu"] = round(rate * self.flops_per_token / self.peak, 4)
        logs.update(extra)
        # Trainer appended a copy of `logs` to the history before calling us.
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(extra)
