"""The beam-search knobs: one table, as `pipeline.WARPERS` is for the warpers.

`SEARCH` holds the SamplingParams fields that turn a row into a beam search (transformers'
`generate(num_beams=N, do_sample=False, length_penalty=..., early_stopping=...)`): their "off"
values, types, bounds and help. SamplingParams takes its fields and validation from it and
`python -m generation` its options. Beams are deterministic: a beam row refuses every sampling
warper and the repetition penalty (one message each).
"""

from __future__ import annotations

from dataclasses import dataclass

from .pipeline import WARPERS, range_problem

MAX_BEAMS = 64
EARLY_STOPPING = (False, True, "never")


@dataclass(frozen=True)
class SearchKnob:
    """One beam-search field.

    Attributes:
        field: the SamplingParams field (`--field-name` on the command line).
        off: its default (for num_beams, the value that turns beam search off).
        kind: int, float, or "bool | str" for a choice among `choices`.
        help: what it does.
        low, high: the allowed range of a numeric field.
        choices: the allowed values of a choice field.
        low_open, off_means: as for a Warper (what error messages say).
    """

    field: str
    off: object
    kind: object
    help: str
    low: float = 0
    high: float = 0
    choices: tuple = ()
    low_open: bool = False
    off_means: str = "off"

    def problem(self, value: object) -> str | None:
        """What is wrong with `value` for this field, or None when it is allowed."""
        if not self.choices:
            return range_problem(self, value)
        # `True == 1` in Python: only the bools themselves and the strings count.
        if any(value is c if isinstance(c, bool) else value == c for c in self.choices):
            return None
        return f"{self.field} must be one of {', '.join(map(repr, self.choices))}, got {value!r}"


SEARCH = (
    SearchKnob("num_beams", 1, int, "beams kept by beam search (1 = off); deterministic",
               low=1, high=MAX_BEAMS, off_means="no beam search"),
    SearchKnob("length_penalty", 1.0, float,
               "beam search: a finished score is sum(log-probs) / length ** length_penalty",
               low=-100, high=100, off_means="the default"),
    SearchKnob("early_stopping", False, "bool | str",
               "beam search: True stops at num_beams finished hypotheses; False when none can "
               "improve (at the current length); 'never' at the longest length",
               choices=EARLY_STOPPING),
)


def beam_conflicts(params) -> list[str]:
    """The sampling settings a beam row (num_beams > 1) refuses, one message each."""
    if not (isinstance(params.num_beams, int) and params.num_beams > 1):
        return []
    return [f"{w.field} must stay {w.off:g} with num_beams > 1 (beam search is deterministic"
            + (")" if not w.every_row else "; the engine applies no penalty to beams)")
            for w in WARPERS if getattr(params, w.field) != w.off]


def parse_early_stopping(text: str) -> bool | str:
    """The command line's --early-stopping value: true, false or never.

    Raises:
        ValueError: any other text.
    """
    value = {"true": True, "false": False, "never": "never"}.get(text.strip().lower())
    if value is None:
        raise ValueError(f"must be true, false or never, got {text!r}")
    return value
