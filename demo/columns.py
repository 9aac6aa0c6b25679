"""The demo's columns: one row each, from which the UI, the API and the README's table are made.

A column has a key (the UI's elem ids `KEY-text`, `KEY-stats`, `KEY-shaded`), a label, a
heading and description, its knobs (the controls, with their ranges and defaults, and the API
parameters of the same names), and how its SamplingParams are built from them. Adding a column
is adding a row to COLUMNS; it gets its controls, its outputs and its own endpoint.

    python -m demo.columns --markdown      # the README's table of columns
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

from generation import SamplingParams
from generation.sampling.pipeline import WARPERS
from generation.sampling.search import SEARCH

MAX_NEW_TOKENS = 512
_WARPERS = {w.field: w for w in WARPERS}


@dataclass(frozen=True)
class Bounds:
    """What the API accepts for one value (for a SamplingParams field: its WARPERS row's).

    Attributes:
        whole: an integer. JSON and the browser have one number type, so a whole float such
            as 2.0 counts (it is passed on as 2); 1.5 does not.
        low, high: the range; `low_open` leaves `low` itself out.
        note: what special values mean ("0 = greedy"), for the message.
    """

    whole: bool = False
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    note: str = ""

    @classmethod
    def of(cls, name: str) -> Bounds:
        """The bounds of the SamplingParams field `name`, from its row of WARPERS."""
        w = _WARPERS[name]
        return cls(whole=w.kind is int, low=w.low, high=w.high, low_open=w.low_open,
                   note=f"{w.off:g} = {w.off_means}")

    def rule(self) -> str:
        """How a message states these bounds: "a whole number from 0 to 2147483647 (0 = off)"."""
        what = "a whole number" if self.whole else "a number"
        low, high = _shown(self.low), _shown(self.high)
        if self.high == math.inf:
            span = f"> {low}" if self.low_open else f">= {low}"
        elif self.low_open:
            span = f"in ({low}, {high}]"
        else:
            span = f"from {low} to {high}"
        return f"{what} {span}" + (f" ({self.note})" if self.note else "")

    def convert(self, value: object) -> int | float | None:
        """`value` as SamplingParams takes it (int when whole, else float), or None when the
        API refuses it."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        if isinstance(value, float) and not (math.isfinite(value) and (value.is_integer() or not self.whole)):
            return None
        try:
            number = int(value) if self.whole else float(value)
        except OverflowError:  # an int beyond a float's range
            return None
        inside = (self.low < number if self.low_open else self.low <= number) and number <= self.high
        return number if inside else None


def _shown(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


@dataclass(frozen=True)
class Knob:
    """One control: its slider in the UI and its check in the API.

    Attributes:
        name: the SamplingParams field (or request argument) and the API parameter.
        label: the slider's label.
        minimum, maximum, default, step: the slider (a UI range inside `bounds`).
        bounds: what the API accepts (a SamplingParams field's come from WARPERS).
    """

    name: str
    label: str
    minimum: float
    maximum: float
    default: float
    step: float
    bounds: Bounds = Bounds()

    @property
    def whole(self) -> bool:
        """True for an integer knob."""
        return self.bounds.whole

    def check(self, value: object) -> tuple[int | float | None, str | None]:
        """The value as SamplingParams takes it, and the API's complaint (None when allowed).

        Returns:
            (the converted value or None, None or "NAME must be RULE, got VALUE").
        """
        number = self.bounds.convert(value)
        if number is not None:
            return number, None
        return None, f"{self.name} must be {self.bounds.rule()}, got {_given(value)}"


def _given(value: object) -> str:
    """A received value as a message shows it: short, with its JSON type when not a number."""
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    if value is None or isinstance(value, bool | int | float):
        return "null" if value is None else shown
    return f"{shown} ({type(value).__name__})"


TEMPERATURE = Knob("temperature", "temperature", 0.0, 2.0, 0.8, 0.05, Bounds.of("temperature"))
TOP_K = Knob("top_k", "top-k (0 = off)", 0, 200, 40, 1, Bounds.of("top_k"))
TOP_P = Knob("top_p", "top-p (1 = off)", 0.01, 1.0, 0.9, 0.01, Bounds.of("top_p"))
# The request's own knobs, beside the columns'.
MAX_NEW = Knob("max_new_tokens", "max new tokens", 1, MAX_NEW_TOKENS, 64, 1,
               Bounds(whole=True, low=1, high=MAX_NEW_TOKENS))
# SamplingParams takes any integer >= 0 as a seed.
SEED = Knob("seed", "seed (sampling columns)", 0, 2**31 - 1, 0, 1, Bounds(whole=True, low=0))
# Beam search: 1 beam is greedy. length_penalty divides a hypothesis' summed log-probs by
# length ** length_penalty: 0 = no normalisation (short hypotheses win), 1 = transformers'
# default (the mean), 2 = long ones favoured; below 0 the shortest wins, which the slider
# leaves out. The API takes the engine's range (its SEARCH table); beams stay 1-8 (issue 20).
NUM_BEAMS = Knob("num_beams", "beams (1 = greedy)", 1, 8, 4, 1,
                 Bounds(whole=True, low=1, high=8, note="1 = greedy"))
_PENALTY = next(k for k in SEARCH if k.field == "length_penalty")
LENGTH_PENALTY = Knob("length_penalty", "length penalty", 0.0, 2.0, 1.0, 0.1,
                      Bounds(low=_PENALTY.low, high=_PENALTY.high, note="1 = the default"))
# /explain's candidates per token.
MAX_CANDIDATES = 20
CANDIDATES = Knob("candidates", "candidates per token", 1, MAX_CANDIDATES, 5, 1,
                  Bounds(whole=True, low=1, high=MAX_CANDIDATES))
# The UI's advanced knobs, shared by every column (not in the API).
ADVANCED = (
    Knob("min_p", "min-p (0 = off)", 0.0, 1.0, 0.0, 0.01, Bounds.of("min_p")),
    Knob("repetition_penalty", "repetition penalty (1 = off)", 1.0, 2.0, 1.0, 0.05,
         Bounds.of("repetition_penalty")),
)


@dataclass(frozen=True)
class Column:
    """One decoding strategy of the demo.

    Attributes:
        key: the UI's elem ids (`KEY-text` ...) and its name among /generate's outputs.
        label: the output boxes' label.
        title, description: the column's heading.
        endpoint: its own API endpoint (`/ENDPOINT`).
        summary: what that endpoint returns, for the API page.
        knobs: its controls (one per column in the UI; shared by name in the API).
        fixed: SamplingParams fields it always sets.
        seeded: it draws at random, so it takes the seed.
        in_generate: one of /generate's outputs (those stay the first three columns: clients
            unpack three texts).
        advanced: the names of the page's advanced knobs it takes.
        beam: it searches with beams (its result has hypotheses; candidates carry beam scores).
    """

    key: str
    label: str
    title: str
    description: str
    endpoint: str
    summary: str
    knobs: tuple[Knob, ...] = ()
    fixed: Mapping = field(default_factory=dict)
    seeded: bool = True
    in_generate: bool = False
    advanced: tuple[str, ...] = tuple(k.name for k in ADVANCED)
    beam: bool = False

    def params(self, values: Mapping[str, float]) -> SamplingParams:
        """Its SamplingParams from checked knob values by name (its knobs; the seed and the
        advanced knobs it takes when given)."""
        advanced = tuple(k for k in ADVANCED if k.name in self.advanced)
        knobs = self.knobs + advanced + ((SEED,) if self.seeded else ())
        given = {k.name: values[k.name] for k in knobs if k.name in values}
        return SamplingParams(**self.fixed, **given)


COLUMNS = (
    Column("greedy", "greedy", "Greedy", "always the most likely token (no knobs)", "greedy",
           "the most likely token at every step", fixed={"temperature": 0.0}, seeded=False,
           in_generate=True),
    Column("sampling", "sampling", "Sampling", "a draw from the whole distribution", "sample",
           "sampling from the whole distribution at `temperature`", knobs=(TEMPERATURE,),
           in_generate=True),
    Column("top_k_top_p", "top-k / top-p", "Top-k / Top-p",
           "a draw from the k likeliest tokens within mass p", "top_k_top_p",
           "sampling at `temperature` from the top-k tokens within top-p mass",
           knobs=(TEMPERATURE, TOP_K, TOP_P), in_generate=True),
    # Deterministic: no seed, none of the advanced knobs (the engine refuses min-p with beams);
    # early_stopping stays False, transformers' default.
    Column("beam", "beam search", "Beam search",
           "the likeliest whole continuation of `num_beams` kept every step", "beam_search",
           "the best of `num_beams` beams (scores divided by length ** `length_penalty`)",
           knobs=(NUM_BEAMS, LENGTH_PENALTY), fixed={"early_stopping": False}, seeded=False,
           advanced=(), beam=True),
)


def api_knobs(columns) -> list[Knob]:
    """The API parameters after (prompt, max_new_tokens) of an endpoint serving `columns`:
    their knobs by first appearance, then the seed if one of them draws."""
    knobs = list(dict.fromkeys(k for c in columns for k in c.knobs))
    return knobs + ([SEED] if any(c.seeded for c in columns) else [])


def generate_columns() -> list[Column]:
    """The columns /generate returns, in order."""
    return [c for c in COLUMNS if c.in_generate]


def markdown() -> str:
    """The README's table of the columns."""
    lines = ["| column | picks | endpoint | its knobs | in `/generate` |", "|---|---|---|---|---|"]
    for c in COLUMNS:
        knobs = ", ".join(f"`{k.name}`" for k in api_knobs([c])) or "none"
        lines.append(f"| {c.title} | {c.description} | `/{c.endpoint}` | {knobs} | "
                     f"{'yes' if c.in_generate else 'no'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`python -m demo.columns --markdown`: print the README's table."""
    parser = argparse.ArgumentParser(prog="python -m demo.columns", description=__doc__.split("\n")[0])
    parser.add_argument("--markdown", action="store_true", help="print the README's table")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
