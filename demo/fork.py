"""Fork from any token, and the breadcrumb of runs that leads back.

A fork's prompt is the run's prompt + the column's text before the clicked piece + the chosen
candidate; every column runs again from it with the run's settings. Each run (a Generate, a
fork) becomes an entry of the session's breadcrumb (a gr.State: per browser tab, never shared):
picking an entry restores that run's prompt and settings and runs it again (seeds and batch
invariance make the texts those of the first time).
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_HISTORY = 20  # entries kept, the oldest dropped first
LABEL_CHARS = 40


def fork_prompt(prompt: str, pieces: Sequence[str], piece_index: int, candidate: str) -> str:
    """The prompt of a fork.

    Args:
        prompt: the run's prompt.
        pieces: the column's pieces of text, in order.
        piece_index: the clicked piece.
        candidate: the chosen candidate token's text.

    Returns:
        prompt + the pieces before `piece_index` + candidate.

    Raises:
        ValueError: `piece_index` is not one of the pieces.
    """
    if not 0 <= piece_index < len(pieces):
        raise ValueError(f"there is no piece {piece_index} in a text of {len(pieces)} pieces")
    return prompt + "".join(pieces[:piece_index]) + candidate


def entry(label: str, prompt: str, values: Sequence[float]) -> dict:
    """One breadcrumb entry: what it says and the run it restores."""
    return {"label": label, "prompt": prompt, "values": list(values)}


def run_label(prompt: str) -> str:
    """A Generate's entry label: the prompt's end (forks grow it at the end)."""
    tail = prompt if len(prompt) <= LABEL_CHARS else "…" + prompt[-LABEL_CHARS:]
    return f"run: {tail}"


def fork_label(title: str, piece_index: int, candidate: str) -> str:
    """A fork's entry label: where it forked and with what."""
    return f"fork: {title} piece {piece_index + 1} → {candidate[:LABEL_CHARS]!r}"


def push(history: Sequence[dict] | None, new: dict) -> list[dict]:
    """The breadcrumb with `new` appended (newest last), at most MAX_HISTORY long."""
    return [*(history or []), new][-MAX_HISTORY:]


def choices(history: Sequence[dict]) -> list[tuple[str, int]]:
    """The breadcrumb's radio choices: (numbered label, index)."""
    return [(f"{i + 1}. {e['label']}", i) for i, e in enumerate(history)]
