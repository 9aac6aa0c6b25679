"""A request as the scheduler holds it, and the handle its caller reads updates from.

The scheduler's thread owns each row's state (`RowState`); it sends the caller only what
changed (`RowUpdate`s, one message per step on the request's own queue), and the handle
applies them to the caller's copy of the results. No object is written by both threads.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .engine import Prepared
from .params import RowResult, RowStats, StepUpdate


@dataclass(eq=False)
class Request:
    """One submitted request, as the scheduler's thread sees it."""

    prepared: Prepared
    deadline: float  # time.monotonic() after which it ends
    out: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    rows: list = field(default_factory=list)  # RowState per row, made at admission
    stage: int | None = None  # the slot its prompt is prefilled into
    prefilled: int = 0  # prompt tokens already in that slot
    cancelled: bool = False  # set by the caller's thread; read at step boundaries
    ended: bool = False
    done: threading.Event = field(default_factory=threading.Event)  # set with the last message


@dataclass(frozen=True)
class RowUpdate:
    """What one row gained in one step."""

    row: int
    token: int
    delta: str
    probability: float
    finished: bool
    finish_reason: str | None
    stats: RowStats

    @classmethod
    def of(cls, row: int, result: RowResult, delta: str) -> RowUpdate:
        """The update of row `row` whose result just took one token."""
        prob = result.pieces[-1][1] if delta else 0.0
        return cls(row, result.token_ids[-1], delta, prob, result.finished, result.finish_reason,
                   dataclasses.replace(result.stats))


class Handle:
    """The caller's side of one request: iterate it for its updates; `cancel` to stop it.

    Closing the iterator (a generator that stops being read: the Stop button, a closed tab, a
    dropped client job) cancels the request, so its rows leave the batch at the next step.

    Attributes:
        rows: the cumulative result of every row (updated in place as updates are read).
        prompt_truncated: prompt tokens cut from the left to fit the context.
        timed_out: True when the request ended at the scheduler's time limit.
    """

    def __init__(self, request: Request):
        self._request = request
        prompt = len(request.prepared.ids)
        self.rows = [RowResult(stats=RowStats(prompt_tokens=prompt)) for _ in request.prepared.params]
        self.prompt_truncated = request.prepared.truncated
        self.timed_out = False

    def cancel(self) -> None:
        """Ask the scheduler to drop this request at its next step boundary."""
        self._request.cancelled = True

    def __iter__(self) -> Iterator[StepUpdate]:
        """One StepUpdate per decoding step (like `Engine.stream`)."""
        return self.updates(0.0)

    def updates(self, interval_s: float | Callable[[], float] = 0.0) -> Iterator[StepUpdate]:
        """StepUpdates at most every `interval_s` seconds, each with everything since the last.

        `interval_s` may be a function, asked after each update (e.g. longer under load).

        The first token and the end are sent at once; in between, steps are merged so that a
        slow reader (a web server's per-update cost) neither lags behind nor slows the loop.

        Raises:
            Exception: the engine error that ended this request.
        """
        out = self._request.out
        due = 0.0
        pace = interval_s if callable(interval_s) else (lambda: interval_s)
        try:
            while True:
                messages = [out.get()]
                if due and messages[-1][0] == "step":
                    # Wait for the end only, not on the queue: a reader woken at every step
                    # costs the loop's thread a GIL hand-over per step.
                    self._request.done.wait(max(0.0, due - time.monotonic()))
                    while messages[-1][0] == "step" and not out.empty():
                        messages.append(out.get_nowait())
                deltas = self._apply([m[1] for m in messages if m[0] == "step"])
                kind, payload = messages[-1]
                if deltas is not None:
                    yield StepUpdate(deltas=deltas, rows=self.rows, prompt_truncated=self.prompt_truncated)
                    wait = pace()
                    due = time.monotonic() + wait if wait > 0 else 0.0
                if kind == "error":
                    raise payload
                if kind == "end":
                    self.timed_out = payload == "time"
                    return
        finally:
            self.cancel()  # no-op once the request ended

    def read_now(self) -> tuple[StepUpdate | None, bool]:
        """Apply what the scheduler has sent so far, without waiting (for a caller that runs
        the scheduler's steps itself, `Scheduler.drive`).

        Returns:
            (a StepUpdate merging the steps read, or None if none came; True once ended).

        Raises:
            Exception: the engine error that ended this request.
        """
        out, messages = self._request.out, []
        while not out.empty():
            messages.append(out.get_nowait())
        deltas = self._apply([m[1] for m in messages if m[0] == "step"])
        update = None if deltas is None else StepUpdate(
            deltas=deltas, rows=self.rows, prompt_truncated=self.prompt_truncated)
        kind, payload = messages[-1] if messages else ("step", None)
        if kind == "error":
            raise payload
        if kind == "end":
            self.timed_out = payload == "time"
        return update, kind == "end"

    def _apply(self, steps: list[list[RowUpdate]]) -> list[str] | None:
        """Apply the steps' updates to `rows`; the text each row gained (None without steps)."""
        if not steps:
            return None
        deltas = [""] * len(self.rows)
        for updates in steps:
            for u in updates:
                row = self.rows[u.row]
                row.token_ids.append(u.token)
                if u.delta:
                    row.text += u.delta
                    row.pieces.append((u.delta, u.probability))
                    deltas[u.row] += u.delta
                row.finished, row.finish_reason, row.stats = u.finished, u.finish_reason, u.stats
        return deltas
