"""The gate of optimum's files: `model.onnx` against PyTorch, its quantizations against it.

- fp32 logits ≤ atol against the uncached PyTorch forward, on the prefill and on cached
  single-token steps, for a short prompt, one longer than the local-attention window, and a
  left-padded batch of two (pad positions skipped);
- a greedy continuation identical to `transformers.generate`;
- each quantized file's perplexity and teacher-forced top-1 agreement against fp32.

Everything but the padded batch runs through the engine's `OptimumRunner` (the padded batch
needs an attention mask the runner never binds: `export.optimum.padded`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from export.gate import heldout
from export.gate.checks import (
    Check,
    at_most,
    check_greedy,
    greedy_fn,
    quality_checks,
    quantized_quality,
    teacher_forced_fn,
)
from export.gate.reference import torch_logits
from export.gate.settings import GateResult, GateSettings
from export.optimum.padded import PaddedBatch
from generation.runners.optimum import OptimumRunner, map_io
from generation.runners.session import create_session


def open_runner(path: str | Path, device: str = "cpu", heads: int = 0,
                hidden: int = 0) -> OptimumRunner:
    """The engine's runner on an optimum file (the session as the engine opens it).

    Args:
        path: `model.onnx` or a quantization of it.
        device: "cpu" or "cuda".
        heads, hidden: from config.json, for a graph whose cache shape is symbolic.

    Returns:
        The runner (its session on CUDA for device "cuda", else on the CPU).

    Raises:
        ValueError: "cuda" without a usable GPU, or a graph without a KV cache.
    """
    session, provider = create_session(str(path), device)
    return OptimumRunner(session, provider, map_io(session, heads, hidden))


class RowBatch:
    """One prompt through the runner, with `PaddedBatch`'s interface (`ids`, `mask`,
    `prefill`, `step`) so one logit check serves both."""

    def __init__(self, runner: OptimumRunner, row: Sequence[int], steps: int):
        self.runner = runner
        self.ids = np.asarray([row], dtype=np.int64)
        self.mask = None  # every position real: the reference runs without a mask
        self.cache = runner.new_cache(1, len(row) + steps)

    def prefill(self) -> np.ndarray:
        """logits [1, len(row), vocab] of the prompt."""
        row = self.ids[0].tolist()
        return self.runner.prefill(self.cache, 0, row, keep=len(row))[None]

    def step(self, tokens: np.ndarray) -> np.ndarray:
        """One token; logits [1, vocab]."""
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        self.ids = np.concatenate([self.ids, tokens[:, None]], axis=1)
        return self.runner.step(self.cache, tokens)


def check_logits(model, batch: RowBatch | PaddedBatch, label: str, steps: int = 3,
                 atol: float = 1e-4) -> list[Check]:
    """Compare ONNX and PyTorch logits on a prefill and on `steps` cached single-token steps.

    Each cached step feeds every row its own greedy token and compares the step's logits with
    an uncached PyTorch forward over the whole sequence so far (so the cache itself is
    checked, not assumed). Pad positions are skipped.

    Returns:
        Two checks: `{label} prefill` and `{label} cached steps`, each the max abs diff.
    """
    logits = batch.prefill()
    reference = torch_logits(model, batch.ids, batch.mask)
    real = np.ones(batch.ids.shape, bool) if batch.mask is None else batch.mask.astype(bool)
    prefill = float(np.abs(logits[real] - reference[real]).max())
    shape = f"{batch.ids.shape[0]}x{batch.ids.shape[1]} tokens"
    checks = [at_most(f"{label} prefill", prefill, atol, shape)]
    last, diffs = logits[:, -1], []
    for _ in range(steps):
        last = batch.step(np.argmax(last, axis=-1))
        reference = torch_logits(model, batch.ids, batch.mask)
        diffs.append(float(np.abs(last - reference[:, -1]).max()))
    per_step = ", ".join(f"{d:.2e}" for d in diffs)
    checks.append(at_most(f"{label} cached steps", max(diffs), atol, f"per step: {per_step}"))
    return checks


def gate_prompts(tokenizer, config, texts: Sequence[str], greedy_tokens: int,
                 steps: int) -> dict[str, list[list[int]]]:
    """Token prompts for the logit checks: a short one, one longer than the local-attention
    window (so local attention and its masking are exercised), and a left-padded batch of two
    (a long row and a short one). All fit the position table with room for the steps.

    Returns:
        {"short b1": [ids], "long b1": [ids], "left-padded b2": [ids, ids]}.
    """
    window = int(getattr(config, "window_size", 0) or 64)
    max_pos = int(getattr(config, "max_position_embeddings", 0) or 2048)
    long_len = min(window + 16, max_pos - max(steps, greedy_tokens) - 1)
    stream = heldout.token_stream(tokenizer, texts, long_len + 32, tokenizer.eos_token_id)
    short = stream[:12]
    return {
        "short b1": [short],
        "long b1": [stream[:long_len]],
        "left-padded b2": [stream[24:24 + long_len - 8], stream[:5]],
    }


def run_gate(model, tokenizer, fp32_path: Path, quantized: dict[str, Path],
             settings: GateSettings, log=print) -> GateResult:
    """Run every check of the gate.

    Args:
        model: the PyTorch reference (transformers causal LM, eval mode).
        tokenizer: its tokenizer.
        fp32_path: the exported `model.onnx`.
        quantized: {"int8": path, ...} quantized files to score against fp32.
        settings: limits and sizes.
        log: where progress lines go.

    Returns:
        The GateResult (check `.passed`).
    """
    start = time.perf_counter()
    shape = (int(getattr(model.config, "num_attention_heads", 0) or 0),
             int(getattr(model.config, "hidden_size", 0) or 0))
    runner = open_runner(fp32_path, settings.device, *shape)
    max_pos = int(getattr(model.config, "max_position_embeddings", 0) or 2048)
    greedy = min(settings.greedy_tokens, max_pos // 2)  # a small context still fits the prompts
    prompts = gate_prompts(tokenizer, model.config, settings.texts, greedy, settings.steps)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    checks: list[Check] = []
    for label, rows in prompts.items():
        log(f"[gate] fp32 logits vs PyTorch: {label} ({', '.join(str(len(r)) for r in rows)} tokens)")
        batch = RowBatch(runner, rows[0], settings.steps) if len(rows) == 1 else \
            PaddedBatch(runner.session, rows, pad_id)
        checks += check_logits(model, batch, f"fp32 logits {label}", settings.steps, settings.atol)
    log(f"[gate] greedy {greedy} tokens vs transformers generate")
    checks.append(check_greedy(model, greedy_fn(runner), prompts["short b1"][0], greedy))
    quality = {}
    if quantized:
        stream = heldout.token_stream(tokenizer, settings.texts, settings.eval_tokens,
                                      tokenizer.eos_token_id)
        chunk = min(settings.chunk_tokens, max_pos)
        pieces = heldout.chunks(stream, chunk)
        reference = teacher_forced_fn(runner, chunk)
        for precision, path in quantized.items():
            log(f"[gate] {precision}: perplexity and agreement vs fp32 on {len(stream)} tokens")
            candidate = teacher_forced_fn(open_runner(path, settings.device, *shape), chunk)
            quality[precision] = quantized_quality(reference, candidate, pieces)
            checks += quality_checks(precision, quality[precision],
                                     settings.max_ppl_increase.get(precision),
                                     settings.min_agreement)
    return GateResult(checks, quality, time.perf_counter() - start)
