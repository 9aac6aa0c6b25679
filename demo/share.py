"""Share a run by link: the page's controls as a query string, and back.

The URL holds everything a run depends on (the prompt and every setting of every column, the
seed included), so opening it fills the controls and, with seeds and batch invariance, shows
exactly the texts the sharer saw. Nothing is kept on the server: the link is the state (Gradio's
DeepLinkButton once served one visitor's state to another, gradio#11201).

The page's address is added in the browser (`window.location`), not here: behind a proxy or in
a Space's iframe only the browser knows the address the visitor used, while the server would
have to trust X-Forwarded-* headers (gradio's `route_utils.get_root_url`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from urllib.parse import urlencode

from generation.sampling.params import prompt_problems

from .columns import ADVANCED, COLUMNS, MAX_NEW, SEED, Knob
from .handlers import MAX_PROMPT_CHARS

# The browser joins the page's own address to the query string the server wrote.
SHARE_JS = ("(query) => query && !query.startsWith('http') ? window.location.origin"
            " + window.location.pathname + '?' + query : query")


def page_controls() -> list[tuple[str, Knob]]:
    """The page's knob controls after the prompt, in the order of the UI's inputs, each with
    its name in a share link (`KEY.KNOB` for a column's own knob)."""
    controls = [(MAX_NEW.name, MAX_NEW), (SEED.name, SEED)]
    controls += [(f"{c.key}.{k.name}", k) for c in COLUMNS for k in c.knobs]
    return controls + [(k.name, k) for k in ADVANCED]


def query_string(prompt: str, values: Sequence[float]) -> str:
    """The share link's query string for the page's controls.

    Args:
        prompt: the prompt box.
        values: the controls' values in `page_controls()` order.

    Returns:
        The query string (no leading "?").
    """
    pairs = [("prompt", prompt)]
    for (name, knob), value in zip(page_controls(), values, strict=True):
        number, _ = knob.check(value)
        pairs.append((name, _shown(knob, knob.default if number is None else number)))
    return urlencode(pairs)


def _number(knob: Knob, value: float) -> int | float:
    return int(value) if knob.whole else float(value)


def _shown(knob: Knob, value: float) -> str:
    value = _number(knob, value)
    return str(value) if isinstance(value, int) else repr(value)


def read_query(query: Mapping[str, str]) -> tuple[str | None, list[float], list[str]]:
    """The controls a share link asks for; what it cannot have is ignored or clamped.

    Args:
        query: the page request's query parameters.

    Returns:
        (the prompt, or None when the link has none; every control's value in
        `page_controls()` order, the default where the link has none; one note per value
        that was ignored or changed).
    """
    notes = []
    prompt = query.get("prompt")
    if prompt is not None:
        if prompt_problems(prompt):
            notes.append("the prompt was empty or not text: ignored")
            prompt = None
        elif len(prompt) > MAX_PROMPT_CHARS:
            notes.append(f"the prompt was cut to {MAX_PROMPT_CHARS} characters")
            prompt = prompt[:MAX_PROMPT_CHARS]
    values = []
    for name, knob in page_controls():
        value, note = _read_knob(knob, query.get(name), name)
        values.append(value)
        if note:
            notes.append(note)
    known = {"prompt", *(name for name, _ in page_controls())}
    unknown = sorted(set(query) - known)
    if unknown:
        notes.append("unknown settings ignored: " + ", ".join(unknown[:5])[:200])
    return prompt, values, notes


def _read_knob(knob: Knob, text: str | None, name: str) -> tuple[float, str | None]:
    """One control from its query value: (value, note or None)."""
    if text is None:
        return knob.default, None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        return knob.default, f"{name}={text[:40]!r} is not a number: the default {knob.default} is used"
    # The slider's range (the seed has none but its own): the page cannot show more.
    low, high = knob.minimum, knob.maximum
    wanted = value
    if knob.whole:
        value = float(round(value))
    value = min(max(value, low), high)
    if value != wanted:
        allowed = f"{_number(knob, low)} to {_number(knob, high)}" + (", whole" if knob.whole else "")
        return _number(knob, value), f"{name}={text[:40]!r} became {_number(knob, value)} (allowed: {allowed})"
    return _number(knob, value), None


def notes_markdown(notes: Sequence[str]) -> str:
    """The visible note about a share link's values that were not taken as they were."""
    if not notes:
        return ""
    return "**Share link:** " + "; ".join(notes) + "."
