"""Sampling parameters of one output row, and the results the engine reports per row."""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field, make_dataclass

from .candidates import Candidates
from .pipeline import WARPERS
from .search import SEARCH, beam_conflicts


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


class _Settings:
    """What SamplingParams does beyond holding its fields (which come from the WARPERS table)."""

    @property
    def greedy(self) -> bool:
        """True when this row takes the argmax (temperature 0)."""
        return self.temperature == 0

    @property
    def beam(self) -> bool:
        """True when this row is a beam search (num_beams > 1)."""
        return isinstance(self.num_beams, int) and self.num_beams > 1

    def problems(self) -> list[str]:
        """Every problem with these parameters, one message each (empty when valid)."""
        issues = [m for w in WARPERS + SEARCH if (m := w.problem(getattr(self, w.field))) is not None]
        issues += beam_conflicts(self)
        seed = self.seed
        if seed is not None and (not isinstance(seed, numbers.Integral) or isinstance(seed, bool)
                                 or seed < 0):
            issues.append(f"seed must be an integer >= 0 or None, got {seed!r}")
        return issues


# Made from the table, so that a warper's row is also its field: its "off" value is the
# default, its bounds are what `problems` checks. Frozen: equal settings hash alike.
SamplingParams = make_dataclass(
    "SamplingParams",
    [(w.field, w.kind, field(default=w.off)) for w in WARPERS + SEARCH]
    + [("seed", "int | None", field(default=None))],
    bases=(_Settings,), frozen=True)
SamplingParams.__module__ = __name__  # for pickle and repr tools (make_dataclass says "types")
SamplingParams.__doc__ = (
    "How one row picks its next token. The defaults are greedy decoding.\n\n"
    "    Attributes:\n"
    + "".join(f"        {w.field}: {w.help}\n" for w in WARPERS + SEARCH)
    + "        seed: seeds this row's own `np.random.Generator`; None draws fresh entropy.\n")


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

    def record(self, now: float) -> None:
        """Count one more token (or beam step) of the row, at `now` seconds."""
        self.new_tokens += 1
        if self.new_tokens == 1:
            self.ttft_s = now
        self.elapsed_s = now
        decode_time = now - self.ttft_s
        self.tokens_per_s = ((self.new_tokens - 1) / decode_time if decode_time > 0
                             else self.new_tokens / max(now, 1e-9))


@dataclass(frozen=True)
class Hypothesis:
    """One finished beam of a beam row: its text, its new token ids (a final EOS included) and
    its score, sum(log-probs) / len(token_ids) ** length_penalty (transformers' score)."""

    text: str
    token_ids: tuple[int, ...]
    score: float


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
        stats: timing of this row (for a beam row, new_tokens counts beam steps).
        candidates: with `candidates=K`, one Candidates per token of token_ids (for a beam row:
            filled when it finishes, for the best hypothesis); [] when off.
        hypotheses: a beam row's finished hypotheses, best first (filled when it finishes; []
            for other rows). Then text and token_ids are the best one's.
    """

    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    pieces: list[tuple[str, float]] = field(default_factory=list)
    finished: bool = False
    finish_reason: str | None = None
    stats: RowStats = field(default_factory=RowStats)
    candidates: list[Candidates] = field(default_factory=list)
    hypotheses: list[Hypothesis] = field(default_factory=list)


@dataclass
class StepUpdate:
    """What `Engine.stream` yields after each decoding step.

    Attributes:
        deltas: the text each row added this step ("" when nothing new or finished).
        rows: the cumulative state of every row, in the order of the params given.
        prompt_truncated: prompt tokens cut from the left to fit the context (0 if none).
        replaced: per row, True when its text did not just grow but was replaced (a beam row
            whose best running beam changed; then deltas[i] is the whole new text, rows[i].text).
            Other rows only grow.
    """

    deltas: list[str]
    rows: list[RowResult]
    prompt_truncated: int = 0
    replaced: list[bool] = field(default_factory=list)
