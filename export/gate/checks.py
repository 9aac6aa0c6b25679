"""The checks both gates run, each returning `Check`s with the measured number:

- `check_greedy`: an ONNX greedy continuation against transformers' `generate`.
- `quantized_quality` + `quality_checks`: perplexity and teacher-forced top-1 agreement of a
  quantized file against the fp32 file on held-out text.

The ONNX side is the engine's own runner (`generation.runners`: `OptimumRunner` or
`DecodeRunner`, one API) through `greedy_fn` / `teacher_forced_fn`, so a gate checks the cache
handling the engine uses, not a second copy of it. The logit checks are each gate's own
(`export.optimum.gate`, `export.decode.gate`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

Greedy = Callable[..., list[int]]  # (prompt, new_tokens, eos_id=None) -> new token ids
Scorer = Callable[[Sequence[int]], np.ndarray]  # chunk -> logits [len(chunk), vocab]


@dataclass
class Check:
    """One measured number against its limit (limit None: reported only, always passes)."""

    name: str
    value: float
    limit: float | None
    passed: bool
    detail: str = ""
    op: str = "<="  # how value must compare to limit: "<=" or ">="

    def line(self) -> str:
        """A one-line summary, e.g. `PASS fp32 prefill b1: 3.1e-06 (limit <= 1e-04)`."""
        status = "PASS" if self.passed else "FAIL"
        bound = "" if self.limit is None else f" (limit {self.op} {self.limit:.3g})"
        extra = f" [{self.detail}]" if self.detail else ""
        return f"{status} {self.name}: {self.value:.4g}{bound}{extra}"

    def to_dict(self) -> dict:
        return asdict(self)


def at_most(name: str, value: float, limit: float | None, detail: str = "") -> Check:
    """A check that passes when `value <= limit` (NaN always fails)."""
    passed = limit is None or (not math.isnan(value) and value <= limit)
    return Check(name, float(value), limit, passed, detail)


def at_least(name: str, value: float, limit: float | None, detail: str = "") -> Check:
    """A check that passes when `value >= limit` (NaN always fails)."""
    passed = limit is None or (not math.isnan(value) and value >= limit)
    return Check(name, float(value), limit, passed, detail, op=">=")


def greedy_fn(runner) -> Greedy:
    """A greedy decoder on a runner: prefill the prompt into a fresh one-slot cache, then
    single-token steps.

    Args:
        runner: an `OptimumRunner` or `DecodeRunner` (`new_cache`, `prefill`, `step`).

    Returns:
        `greedy(prompt, new_tokens, eos_id=None) -> new token ids` (stops after `eos_id`;
        None: all `new_tokens`).
    """
    def greedy(prompt, new_tokens, eos_id=None):
        cache = runner.new_cache(1, len(prompt) + new_tokens)
        logits, out = runner.prefill(cache, 0, list(prompt))[-1], []
        for _ in range(new_tokens):
            out.append(int(np.argmax(logits)))
            if out[-1] == eos_id:
                break
            logits = runner.step(cache, np.asarray([out[-1]], dtype=np.int64))[0]
        return out
    return greedy


def teacher_forced_fn(runner, capacity: int) -> Scorer:
    """A teacher-forced scorer on a runner: each chunk is one prefill into an emptied slot.

    Args:
        runner: an `OptimumRunner` or `DecodeRunner`.
        capacity: the longest chunk it will be given (the cache's size).

    Returns:
        `score(chunk) -> float32 logits [len(chunk), vocab]` (every position kept).
    """
    cache = runner.new_cache(1, capacity)

    def score(chunk):
        cache.clear(0)
        return runner.prefill(cache, 0, list(chunk), keep=len(chunk))
    return score


def check_greedy(
    model,
    decode: Greedy,
    prompt: Sequence[int],
    new_tokens: int = 32,
    prefix: str = "",
    stop_at_eos: bool = True,
) -> Check:
    """ONNX greedy decoding (with the cache) against transformers `generate(do_sample=False)`.

    Both sides stop after the model's EOS token (from its generation config), as `generate`
    does; the detail says how many tokens were compared. `decode` is a `greedy_fn`; `prefix`
    starts the name; `stop_at_eos=False` compares all `new_tokens` (EOS is then a token like
    any other).

    Returns:
        A check whose value is the number of differing tokens (limit 0).
    """
    import torch
    from transformers import GenerationConfig

    eos = model.generation_config.eos_token_id if stop_at_eos else None
    eos = eos[0] if isinstance(eos, list) else eos
    # generate fills an unset eos_token_id from the model's own; an id past the vocabulary
    # can never be produced, so with stop_at_eos=False it runs all new_tokens.
    stop = eos if stop_at_eos else model.config.vocab_size
    ids = torch.tensor([list(prompt)], device=next(model.parameters()).device)
    config = GenerationConfig(do_sample=False, max_new_tokens=new_tokens, eos_token_id=stop,
                              pad_token_id=eos if eos is not None else 0)
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=config)
    expected = out[0, ids.shape[1]:].tolist()
    if eos in expected:
        expected = expected[: expected.index(eos) + 1]
    got = decode(prompt, new_tokens, eos_id=eos)
    wrong = sum(a != b for a, b in zip(expected, got, strict=False)) + abs(len(expected) - len(got))
    first = next((i for i, (a, b) in enumerate(zip(expected, got, strict=False)) if a != b), None)
    detail = f"{len(expected)} tokens" if first is None else (
        f"first difference at {first}: transformers {expected[first]} vs onnx {got[first]}")
    return at_most(f"{prefix}greedy {new_tokens} tokens vs transformers generate", wrong, 0, detail)


def quantized_quality(
    reference: Scorer,
    candidate: Scorer,
    chunks: Sequence[Sequence[int]],
) -> dict[str, float]:
    """Perplexity of both scorers (`teacher_forced_fn`) and their top-1 agreement on
    held-out token chunks: every position predicts the next token (teacher forcing).

    Returns:
        {"ppl_reference", "ppl", "ppl_increase" (relative), "agreement" (fraction of
        positions whose argmax token is the same), "tokens" (positions scored)}.
    """
    nll = {"reference": 0.0, "candidate": 0.0}
    agree = total = 0
    for chunk in chunks:
        targets = np.asarray(chunk[1:], dtype=np.int64)
        tops = {}
        for key, score in (("reference", reference), ("candidate", candidate)):
            logits = score(chunk)[:-1].astype(np.float64)
            log_z = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
            nll[key] += float((log_z - logits[np.arange(len(targets)), targets]).sum())
            tops[key] = logits.argmax(-1)
        agree += int((tops["reference"] == tops["candidate"]).sum())
        total += len(targets)
    ppl_ref = math.exp(nll["reference"] / total)
    ppl = math.exp(nll["candidate"] / total)
    return {"ppl_reference": ppl_ref, "ppl": ppl, "ppl_increase": ppl / ppl_ref - 1.0,
            "agreement": agree / total, "tokens": total}


def quality_checks(
    precision: str,
    quality: dict[str, float],
    max_ppl_increase: float | None,
    min_agreement: float | None,
) -> list[Check]:
    """Turn `quantized_quality` numbers into the gate's checks for one quantized file."""
    detail = (f"ppl {quality['ppl']:.4f} vs fp32 {quality['ppl_reference']:.4f} "
              f"on {quality['tokens']} tokens")
    return [
        at_most(f"{precision} perplexity increase", quality["ppl_increase"], max_ppl_increase, detail),
        at_least(f"{precision} greedy-token agreement", quality["agreement"], min_agreement,
                 f"teacher-forced top-1 vs fp32 on {quality['tokens']} positions"),
    ]
