"""The gate's plan: which prompts and texts each check of `export.validate` runs on."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from export import heldout, ort_io, validate


@dataclass
class GateSettings:
    """Limits and sizes of the gate (the CLI's flags fill these)."""

    atol: float = 1e-4
    steps: int = 3
    greedy_tokens: int = 64
    texts: Sequence[str] = field(default_factory=lambda: list(heldout.BUILTIN_TEXT))
    eval_tokens: int = 2048
    chunk_tokens: int = 128
    max_ppl_increase: dict[str, float | None] = field(
        default_factory=lambda: {"int8": 0.01, "int4": 0.03})
    min_agreement: float | None = None
    device: str = "cpu"


@dataclass
class GateResult:
    """Every check run, the quantized files' quality numbers, and the time spent."""

    checks: list[validate.Check]
    quality: dict[str, dict[str, float]]
    seconds: float

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[validate.Check]:
        return [c for c in self.checks if not c.passed]


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
    session = ort_io.open_session(fp32_path, settings.device)
    prompts = gate_prompts(tokenizer, model.config, settings.texts, settings.greedy_tokens,
                           settings.steps)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    checks: list[validate.Check] = []
    for label, rows in prompts.items():
        log(f"[gate] fp32 logits vs PyTorch: {label} ({', '.join(str(len(r)) for r in rows)} tokens)")
        checks += validate.check_logits(model, session, rows, pad_id, f"fp32 logits {label}",
                                        settings.steps, settings.atol)
    log(f"[gate] greedy {settings.greedy_tokens} tokens vs transformers generate")
    checks.append(validate.check_greedy(model, session, prompts["short b1"][0],
                                        settings.greedy_tokens))
    quality = {}
    if quantized:
        max_pos = int(getattr(model.config, "max_position_embeddings", 0) or 2048)
        stream = heldout.token_stream(tokenizer, settings.texts, settings.eval_tokens,
                                      tokenizer.eos_token_id)
        pieces = heldout.chunks(stream, min(settings.chunk_tokens, max_pos))
        for precision, path in quantized.items():
            log(f"[gate] {precision}: perplexity and agreement vs fp32 on {len(stream)} tokens")
            candidate = ort_io.open_session(path, settings.device)
            quality[precision] = validate.quantized_quality(session, candidate, pieces)
            checks += validate.quality_checks(precision, quality[precision],
                                              settings.max_ppl_increase.get(precision),
                                              settings.min_agreement)
    return GateResult(checks, quality, time.perf_counter() - start)
