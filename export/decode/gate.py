"""The gate for the decode graphs: fp32 against PyTorch, quantized variants against fp32.

- fp32 logits ≤ atol against the uncached PyTorch forward, on each row's prefill and on cached
  steps, for a short prompt, one longer than the local window, one filling the model's whole
  context, and rows of different lengths decoded in one batch;
- fp32 greedy identical to `transformers.generate`;
- each quantized variant's perplexity (limit enforced) and top-1 agreement against fp32;
- a few timed steps at batch 1 per variant (CPU time), to pick the default (for the choice only).

Every graph is run through the engine's own runner (`generation.runners.decode_graph`), so the
gate checks the cache handling the engine uses, not a second copy of it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from export.decode.checkpoint import DecodeConfig
from export.gate import checks as gate_checks
from export.gate import heldout
from export.gate.checks import Check, at_most
from export.gate.reference import torch_logits
from generation.runners.decode_graph import DecodeRunner, SlotCache
from generation.runners.session import create_session


def decode_runner(path: Path, threads: int | None = None) -> DecodeRunner:
    """The engine's runner on a decode graph file, its session opened as the engine opens it,
    so the gate checks what the engine runs (`threads` None: the cores this process may use)."""
    session, provider = create_session(str(path), "cpu", threads)
    return DecodeRunner(session, provider)


def open_decode(path: Path, config: DecodeConfig, rows: int = 1, capacity: int | None = None,
                threads: int | None = None) -> tuple[DecodeRunner, SlotCache]:
    """`decode_runner` and a cache of `rows` slots of `capacity` positions."""
    runner = decode_runner(path, threads)
    return runner, runner.new_cache(rows, capacity or config.context)


def decode_prompts(tokenizer, config: DecodeConfig, texts: Sequence[str], steps: int) -> dict:
    """Prompts for the logit checks: short, past the local window, the whole context, and rows
    of different lengths for one batch (all leave room for `steps` cached steps)."""
    window = max(config.windows) or 64
    full = config.context - steps
    stream = heldout.token_stream(tokenizer, texts, full, tokenizer.eos_token_id)
    stream = (stream * (-(-full // max(len(stream), 1))))[:full]  # repeat a short text
    long = min(window + 16, full)
    return {"short b1": [stream[:12]], "past the window b1": [stream[:long]],
            "whole context b1": [stream],
            "different lengths b3": [stream[7:7 + long], stream[:5], stream[3:3 + long // 2 + 1]]}


def check_decode_logits(model, path: Path, config: DecodeConfig, rows: Sequence[Sequence[int]],
                        label: str, steps: int, atol: float) -> list[Check]:
    """Prefill each row in its own slot, then decode all rows together for `steps` steps,
    each row fed its own greedy token; every logit is compared with PyTorch on that row alone.

    Returns:
        `{label} prefill` and `{label} cached steps` checks (max abs difference).
    """
    runner, cache = open_decode(path, config, len(rows), max(len(r) for r in rows) + steps)
    seqs = [list(r) for r in rows]
    prefill = 0.0
    last = []
    for slot, ids in enumerate(seqs):
        logits = runner.prefill(cache, slot, ids, keep=len(ids))
        prefill = max(prefill, float(np.abs(logits - torch_logits(model, [ids])[0]).max()))
        last.append(logits[-1])
    diffs = []
    for _ in range(steps):
        tokens = [int(np.argmax(x)) for x in last]
        logits = runner.step(cache, np.asarray(tokens, dtype=np.int64)).copy()
        for slot, token in enumerate(tokens):
            seqs[slot].append(token)
        diffs.append(max(float(np.abs(logits[s] - torch_logits(model, [seqs[s]])[0, -1]).max())
                         for s in range(len(seqs))))
        last = list(logits)
    lengths = "/".join(str(len(r)) for r in rows)
    return [at_most(f"decode fp32 logits {label} prefill", prefill, atol, f"{lengths} tokens"),
            at_most(f"decode fp32 logits {label} cached steps", max(diffs), atol,
                             "per step: " + ", ".join(f"{d:.2e}" for d in diffs))]


def time_steps(paths: dict[str, Path], config: DecodeConfig, prompt: Sequence[int],
               steps: int = 16, rounds: int = 3) -> dict[str, float]:
    """CPU milliseconds of one batch-1 decode step after `prompt`, per graph.

    Process CPU time of a 1-thread session, the graphs taking turns, median of `rounds`:
    on a shared machine this orders the variants far more reliably than wall time (it is
    for choosing the default, not a benchmark)."""
    runners = {p: open_decode(path, config, 1, len(prompt) + steps + 1, threads=1)
               for p, path in paths.items()}
    times: dict[str, list[float]] = {p: [] for p in paths}
    for _ in range(rounds):
        for precision, (runner, cache) in runners.items():
            cache.clear(0)
            runner.prefill(cache, 0, list(prompt))
            start = time.process_time()
            for i in range(steps):
                runner.step(cache, np.asarray([prompt[i % len(prompt)]]))
            times[precision].append((time.process_time() - start) * 1e3 / steps)
    return {p: round(float(np.median(t)), 3) for p, t in times.items()}


@dataclass
class DecodeGateResult:
    """The decode graphs' checks, quantized quality, noisy step times, and who passed."""

    checks: list[Check]
    quality: dict[str, dict[str, float]]
    step_ms: dict[str, float]
    passed: list[str] = field(default_factory=list)
    # The prefill graph's checks (None: not run); they decide only whether it is kept.
    prefill_checks: list[Check] | None = None


def run_decode_gate(model, tokenizer, config: DecodeConfig, paths: dict[str, Path], settings,
                    log=print) -> DecodeGateResult:
    """Run the decode graphs' checks.

    Args:
        model, tokenizer: the PyTorch reference and its tokenizer.
        config: the model's shape.
        paths: {"fp32": path, "int8": path, ...}; fp32 is required (the reference).
        settings: the export's `GateSettings` (atol, steps, greedy_tokens, texts, eval sizes,
            max_ppl_increase, min_agreement).
        log: where progress lines go.

    Returns:
        The result; `.passed` lists the precisions whose checks all passed (a quantized one
        only when fp32 passed too).
    """
    fp32, checks, short = paths["fp32"], [], []
    for label, rows in decode_prompts(tokenizer, config, settings.texts, settings.steps).items():
        log(f"[gate] decode fp32 vs PyTorch: {label} ({'/'.join(str(len(r)) for r in rows)} tokens)")
        checks += check_decode_logits(model, fp32, config, rows, label, settings.steps, settings.atol)
        short = rows[0] if label == "short b1" else short
    greedy = min(settings.greedy_tokens, config.context - len(short))
    log(f"[gate] decode fp32 greedy {greedy} tokens vs transformers generate")
    runner = decode_runner(fp32)
    checks.append(gate_checks.check_greedy(model, gate_checks.greedy_fn(runner), short, greedy,
                                           prefix="decode fp32 ", stop_at_eos=False))
    passed = ["fp32"] if all(c.passed for c in checks) else []
    stream = heldout.token_stream(tokenizer, settings.texts, settings.eval_tokens,
                                  tokenizer.eos_token_id)
    pieces = heldout.chunks(stream, min(settings.chunk_tokens, config.context))
    reference, quality = gate_checks.teacher_forced_fn(runner, config.context), {}
    for precision, path in paths.items():
        if precision == "fp32":
            continue
        log(f"[gate] decode {precision}: perplexity and agreement vs fp32 on {len(stream)} tokens")
        candidate = gate_checks.teacher_forced_fn(decode_runner(path), config.context)
        quality[precision] = gate_checks.quantized_quality(reference, candidate, pieces)
        found = gate_checks.quality_checks(f"decode {precision}", quality[precision],
                                           settings.max_ppl_increase.get(precision),
                                           settings.min_agreement)
        checks += found
        if passed and all(c.passed for c in found):
            passed.append(precision)
    step_ms = time_steps({p: paths[p] for p in passed}, config, stream[:17])
    log("[gate] decode step at batch 1, CPU time, 1 thread (for the default; noisy): "
        + ", ".join(f"{p} {ms:.2f} ms" for p, ms in step_ms.items()))
    return DecodeGateResult(checks, quality, step_ms, passed)
