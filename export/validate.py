"""The validation gate: checks that an ONNX export is the same model as the PyTorch one.

Each check is a pure function of (reference, candidate, token ids) returning `Check`s with
the measured number, so tests elsewhere (the generation engine's) can reuse them:

- `check_logits`: fp32 ONNX logits against the uncached PyTorch forward, on the prefill and on
  cached single-token steps, for one prompt or a left-padded batch (pad positions skipped).
- `check_greedy`: an ONNX greedy continuation against transformers' `generate`.
- `quantized_quality` + `quality_checks`: perplexity and teacher-forced top-1 agreement of a
  quantized file against the fp32 file on held-out text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import onnxruntime as ort

from export import ort_io


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


def torch_logits(model, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Uncached PyTorch forward with transformers' mask-derived position ids.

    Args:
        model: a transformers causal LM in eval mode.
        input_ids, attention_mask: [batch, seq] int arrays (left padding allowed).

    Returns:
        logits [batch, seq, vocab] as float32 numpy.
    """
    import torch

    positions = ort_io.position_ids_from_mask(attention_mask)
    device = next(model.parameters()).device
    with torch.no_grad():
        out = model(
            input_ids=torch.as_tensor(input_ids, device=device),
            attention_mask=torch.as_tensor(attention_mask, device=device),
            position_ids=torch.as_tensor(positions, device=device),
            use_cache=False,
        )
    return out.logits.float().cpu().numpy()


def check_logits(
    model,
    session: ort.InferenceSession,
    rows: Sequence[Sequence[int]],
    pad_id: int,
    label: str,
    steps: int = 3,
    atol: float = 1e-4,
) -> list[Check]:
    """Compare ONNX and PyTorch logits on a prefill and on `steps` cached single-token steps.

    The rows are left-padded into one batch. Each cached step feeds every row its own greedy
    token and compares the ONNX step's logits with an uncached PyTorch forward over the whole
    sequence so far (so the cache itself is checked, not assumed). Pad positions are skipped.

    Returns:
        Two checks: `{label} prefill` and `{label} cached steps`, each the max abs diff.
    """
    ids, mask = ort_io.left_pad(rows, pad_id)
    logits, past = ort_io.forward(session, ids, mask)
    reference = torch_logits(model, ids, mask)
    real = mask.astype(bool)
    prefill = float(np.abs(logits[real] - reference[real]).max())
    checks = [at_most(f"{label} prefill", prefill, atol, f"{ids.shape[0]}x{ids.shape[1]} tokens")]
    step_diffs = []
    for _ in range(steps):
        token = np.argmax(logits[:, -1], axis=-1).reshape(-1, 1).astype(np.int64)
        ids = np.concatenate([ids, token], axis=1)
        mask = np.concatenate([mask, np.ones_like(token)], axis=1)
        logits, past = ort_io.forward(session, token, mask, past)
        reference = torch_logits(model, ids, mask)
        step_diffs.append(float(np.abs(logits[:, -1] - reference[:, -1]).max()))
    per_step = ", ".join(f"{d:.2e}" for d in step_diffs)
    checks.append(at_most(f"{label} cached steps", max(step_diffs), atol, f"per step: {per_step}"))
    return checks


def check_greedy(
    model,
    session,
    prompt: Sequence[int],
    new_tokens: int = 32,
    prefix: str = "",
    stop_at_eos: bool = True,
) -> Check:
    """ONNX greedy decoding (with the cache) against transformers `generate(do_sample=False)`.

    Both sides stop after the model's EOS token (from its generation config), as `generate`
    does; the detail says how many tokens were compared. `session` is an optimum-graph
    session or a `(prompt, new_tokens, eos_id) -> tokens` function; `prefix` starts the name;
    `stop_at_eos=False` compares all `new_tokens` (EOS is then a token like any other).

    Returns:
        A check whose value is the number of differing tokens (limit 0).
    """
    import torch
    from transformers import GenerationConfig

    eos = model.generation_config.eos_token_id if stop_at_eos else None
    eos = eos[0] if isinstance(eos, list) else eos
    ids = torch.tensor([list(prompt)], device=next(model.parameters()).device)
    config = GenerationConfig(do_sample=False, max_new_tokens=new_tokens, eos_token_id=eos,
                              pad_token_id=eos if eos is not None else 0)
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=config)
    expected = out[0, ids.shape[1]:].tolist()
    if eos in expected:
        expected = expected[: expected.index(eos) + 1]
    decode = session if callable(session) else (
        lambda p, n, eos_id: ort_io.greedy(session, p, n, eos_id=eos_id))
    got = decode(prompt, new_tokens, eos_id=eos)
    wrong = sum(a != b for a, b in zip(expected, got, strict=False)) + abs(len(expected) - len(got))
    first = next((i for i, (a, b) in enumerate(zip(expected, got, strict=False)) if a != b), None)
    detail = f"{len(expected)} tokens" if first is None else (
        f"first difference at {first}: transformers {expected[first]} vs onnx {got[first]}")
    return at_most(f"{prefix}greedy {new_tokens} tokens vs transformers generate", wrong, 0, detail)


def quantized_quality(
    reference,
    candidate,
    chunks: Sequence[Sequence[int]],
) -> dict[str, float]:
    """Perplexity of both sessions and their top-1 agreement on held-out token chunks.

    Each chunk is one prefill; every position predicts the next token (teacher forcing).
    Each side is an optimum-graph session or a `chunk -> logits [len, vocab]` function.

    Returns:
        {"ppl_reference", "ppl", "ppl_increase" (relative), "agreement" (fraction of
        positions whose argmax token is the same), "tokens" (positions scored)}.
    """
    nll = {"reference": 0.0, "candidate": 0.0}
    agree = total = 0
    for chunk in chunks:
        ids = np.asarray([chunk], dtype=np.int64)
        mask = np.ones_like(ids)
        targets = ids[0, 1:]
        tops = {}
        for key, session in (("reference", reference), ("candidate", candidate)):
            logits = session(chunk) if callable(session) else ort_io.forward(session, ids, mask)[0][0]
            logits = logits[:-1].astype(np.float64)
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
