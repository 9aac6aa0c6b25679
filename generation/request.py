"""What passes between the parts of the decoding loop: data only.

`Prepared` is a checked request (model.py makes it). `Request` is that request as the loop's
thread holds it; the caller's `Handle` reads its `out` queue. A `Plan` is what the scheduler
decides for one step and the executor runs; `Sampled` is what the executor returns;
`RowUpdate` is what one row gained in the step, sent to the caller.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np


@dataclass(frozen=True)
class Prepared:
    """A checked request: prompt ids (cut from the left to fit), params, and when it started."""

    ids: list[int]
    params: list  # SamplingParams, one per row
    max_new_tokens: int
    truncated: int
    start: float  # time.perf_counter() when the request was received
    candidates: int = 0  # K candidates recorded per emitted token (0 = off)


@dataclass(eq=False)
class Request:
    """One submitted request, as the loop's thread sees it (the caller sets only `cancelled`)."""

    prepared: Prepared
    deadline: float  # time.monotonic() after which it ends
    out: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    stage: int | None = None  # the slot its prompt is prefilled into
    prefilled: int = 0  # prompt tokens already in that slot
    generated: list[int] = field(default_factory=list)  # new tokens per row
    unfinished: int = 0  # rows still decoding
    cancelled: bool = False  # set by the caller's thread; read at step boundaries
    ended: bool = False
    done: threading.Event = field(default_factory=threading.Event)  # set with the last message


class RowUpdate(NamedTuple):
    """What one row gained in one step.

    Attributes:
        row: the row's index in its request.
        token: the new token (a beam row: the best running beam's).
        prob: its probability under the raw logits.
        finish_reason: "eos" or "length" when the row ended with this token, else None.
        t: seconds from the request's start to this token.
        candidates: the token's Candidates when the request asked for them, else None.
        beam: a beam row's step, (parents, tokens, probs): running beam i continues beam
            parents[i] with tokens[i] (the caller rebuilds the beams); None for other rows.
        hypotheses: a beam row's last update: (token_ids, score, probs, candidates or None) of
            each finished hypothesis, best first; else None.
    """

    row: int
    token: int
    prob: float
    finish_reason: str | None
    t: float
    candidates: object = None
    beam: tuple | None = None
    hypotheses: tuple | None = None


def slots_of(params: Sequence) -> int:
    """Cache slots (rows of the batch) the params take: a beam row takes num_beams."""
    return sum(p.num_beams for p in params)


@dataclass(frozen=True)
class Join:
    """Rows that start decoding this step, from a prompt prefilled in this step's plan.

    Attributes:
        prefill: the index (among the plan's prefill items) of the prompt's last chunk, whose
            last logits give every row its first token.
        first: the rows' slots are first .. first + len(params) - 1.
        params: one SamplingParams per row (a beam row takes num_beams slots).
        prompt_ids: the prompt (a repetition penalty counts its tokens).
        max_new_tokens: the request's (a beam search ends its hypotheses there).
        candidates: K candidates recorded per token (0 = off).
    """

    prefill: int
    first: int
    params: Sequence
    prompt_ids: Sequence[int]
    max_new_tokens: int = 0
    candidates: int = 0


@dataclass
class Plan:
    """One step, as the scheduler decided it: run `work` in order, then step slots
    0..decode-1 with their last tokens, then draw the next token of every decoding row and of
    each join's rows (in slot order).

    Attributes:
        work: cache operations and prompt chunks, in order: ("prefill", slot, token_ids),
            ("move", src, dst) (a slot's cache and its row's sampler state), ("copy", src,
            dst) (the cache only), ("clear", slot, None), ("reorder", slots, parents) (a beam
            row's slots after its step: the beam that continues beam parents[i] takes its
            cache, which stayed in slots[parents[i]]).
        decode: how many slots step.
        joins: rows that start decoding.
        owners: the request of each prefill item, in order (for the scheduler's
            `update_from_output`; the executor never reads it).
        admitted: requests taken from the wait queue by this plan.
    """

    work: list = field(default_factory=list)
    decode: int = 0
    joins: list[Join] = field(default_factory=list)
    owners: list = field(default_factory=list)
    admitted: int = 0


@dataclass
class Sampled:
    """What the executor ran: the next token of every row of the plan (decoding slots, then
    each join's rows), its probability, and the prefill items that failed.

    Attributes:
        tokens: int64; -1 for the rows of a join whose prefill failed.
        probs: float64, softmax of the raw logits at each token.
        failed: prefill item index -> the error it raised.
        beams: a `beams.BeamStep` per beam row that stepped (its slots' tokens are in it, not
            in `tokens`).
        candidates: per slot, its Candidates (None where not asked); None when nobody asked.
    """

    tokens: np.ndarray
    probs: np.ndarray
    failed: dict[int, BaseException] = field(default_factory=dict)
    beams: list = field(default_factory=list)
    candidates: list | None = None
