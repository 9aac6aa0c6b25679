"""Sampling parameters of one output row, and the results the engine reports per row."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

# Any k >= the vocabulary keeps every token; beyond int32 numpy cannot even hold k.
MAX_TOP_K = 2**31 - 1


def prompt_problems(prompt: object) -> list[str]:
    """What is wrong with a prompt (empty list when it is fine).

    A str holding lone surrogates (from broken JSON escapes or undecodable command-line
    bytes) is not text the tokenizer can encode.
    """
    if not isinstance(prompt, str) or not prompt.strip():
        return ["prompt must be a non-empty string"]
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as err:
        return [f"prompt must be valid Unicode text (a lone surrogate at position {err.start})"]
    return []


@dataclass(frozen=True)
class SamplingParams:
    """How one row picks its next token. The defaults are greedy decoding.

    Attributes:
        temperature: 0 means greedy (argmax); > 0 divides the logits before sampling.
        top_k: keep the k most likely tokens (ties with the k-th are kept); 0 means off.
        top_p: keep the smallest set of most likely tokens whose probability reaches top_p;
            1 means off.
        min_p: keep tokens whose probability is at least min_p times the top token's; 0 means off.
        repetition_penalty: > 1 discourages tokens already in the prompt or output
            (CTRL-style, as in transformers); 1 means off.
        seed: seeds this row's own `np.random.Generator`; None draws fresh entropy.
    """

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        """True when this row takes the argmax (temperature 0)."""
        return self.temperature == 0

    def problems(self) -> list[str]:
        """Every problem with these parameters, one message each (empty when valid)."""
        issues = []
        if not _is_real(self.temperature) or not 0 <= self.temperature <= 100:
            issues.append(f"temperature must be a number in [0, 100] (0 = greedy), got {self.temperature!r}")
        if not _is_int(self.top_k) or not 0 <= self.top_k <= MAX_TOP_K:
            issues.append(f"top_k must be an integer in [0, {MAX_TOP_K}] (0 = off), got {self.top_k!r}")
        if not _is_real(self.top_p) or not 0 < self.top_p <= 1:
            issues.append(f"top_p must be a number in (0, 1] (1 = off), got {self.top_p!r}")
        if not _is_real(self.min_p) or not 0 <= self.min_p <= 1:
            issues.append(f"min_p must be a number in [0, 1] (0 = off), got {self.min_p!r}")
        if not _is_real(self.repetition_penalty) or not 0 < self.repetition_penalty <= 100:
            issues.append(
                "repetition_penalty must be a number in (0, 100] (1 = off), "
                f"got {self.repetition_penalty!r}"
            )
        if self.seed is not None and (not _is_int(self.seed) or self.seed < 0):
            issues.append(f"seed must be an integer >= 0 or None, got {self.seed!r}")
        return issues

    def validate(self) -> None:
        """Check every field.

        Raises:
            ValueError: listing every problem, one per line.
        """
        issues = self.problems()
        if issues:
            raise ValueError("\n".join(issues))


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclass
class RowStats:
    """Timing of one row. Times are seconds from the start of the request.

    Attributes:
        prompt_tokens: prompt tokens fed to the model (after any left truncation).
        new_tokens: tokens generated so far (an EOS token counts).
        ttft_s: time to the first new token (tokenization + prefill + first pick).
        tokens_per_s: decode speed after the first token, (new_tokens - 1) / (elapsed - ttft);
            new_tokens / elapsed while only one token exists.
        elapsed_s: time to the latest token of this row.
    """

    prompt_tokens: int = 0
    new_tokens: int = 0
    ttft_s: float = 0.0
    tokens_per_s: float = 0.0
    elapsed_s: float = 0.0


@dataclass
class RowResult:
    """The cumulative state of one output row (updated in place while streaming).

    Attributes:
        text: the new text only (not the prompt); special tokens are left out.
        token_ids: the new token ids only; a final EOS token is included, as transformers does.
        pieces: emitted text segments, each with the model's probability (softmax of the raw
            logits, before penalty, temperature or filtering) of the token that completed it.
            `"".join(p for p, _ in pieces) == text`.
        finished: True once the row stopped.
        finish_reason: "eos", "length", or None while running.
        stats: timing of this row.
    """

    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    pieces: list[tuple[str, float]] = field(default_factory=list)
    finished: bool = False
    finish_reason: str | None = None
    stats: RowStats = field(default_factory=RowStats)


@dataclass
class StepUpdate:
    """What `Engine.stream` yields after each decoding step.

    Attributes:
        deltas: the text each row added this step ("" when nothing new or finished).
        rows: the cumulative state of every row, in the order of the params given.
        prompt_truncated: prompt tokens cut from the left to fit the context (0 if none).
    """

    deltas: list[str]
    rows: list[RowResult]
    prompt_truncated: int = 0
