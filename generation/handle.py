"""The caller's side of one request: what the loop sent, turned into text and results.

The loop's thread sends each row's `RowUpdate`s (token, probability, finish reason, time), one
message per step on the request's own queue. The handle applies them on the caller's thread:
its `RowBuilder`s own each row's detokenizer and the only `RowResult`, and compute its stats.
No object is written by both threads.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from .beam_row import BeamRowBuilder
from .detok import IncrementalDetokenizer
from .request import Request, RowUpdate
from .sampling.params import RowResult, RowStats, StepUpdate


class RowBuilder:
    """One row's result, built from its updates.

    Args:
        params: the row's sampling settings.
        tokenizer: the `tokenizers.Tokenizer` that decodes it.
        prompt_tokens: prompt tokens fed to the model (after truncation).
    """

    def __init__(self, params, tokenizer, prompt_tokens: int):
        self.params = params
        self.detok = IncrementalDetokenizer(tokenizer)
        self.result = RowResult(stats=RowStats(prompt_tokens=prompt_tokens))

    def apply(self, update: RowUpdate) -> str:
        """Record the row's next token.

        Returns:
            The text it completes ("" while a character is unfinished).
        """
        row = self.result
        row.token_ids.append(update.token)
        if update.finish_reason == "eos":
            delta = self.detok.flush()  # the EOS token itself has no text
        else:
            delta = self.detok.add(update.token)
            if update.finish_reason == "length":
                delta += self.detok.flush()
        if delta:
            row.text += delta
            row.pieces.append((delta, update.prob))
        if update.candidates is not None:
            row.candidates.append(update.candidates)
        row.finished, row.finish_reason = update.finish_reason is not None, update.finish_reason
        row.stats.record(update.t)
        return delta


class Handle:
    """The caller's side of one request: iterate it for its updates; `cancel` to stop it.

    Closing the iterator (a generator that stops being read: the Stop button, a closed tab, a
    dropped client job) cancels the request, so its rows leave the batch at the next step.

    Attributes:
        rows: the cumulative result of every row (updated in place as updates are read).
        prompt_truncated: prompt tokens cut from the left to fit the context.
        timed_out: True when the request ended at the loop's time limit.
    """

    def __init__(self, request: Request, tokenizer):
        self._request = request
        prompt = len(request.prepared.ids)
        self._builders = [(BeamRowBuilder if p.beam else RowBuilder)(p, tokenizer, prompt)
                          for p in request.prepared.params]
        self._beam_rows = [i for i, p in enumerate(request.prepared.params) if p.beam]
        self.rows = [b.result for b in self._builders]
        self._replaced: list[bool] = []
        self.prompt_truncated = request.prepared.truncated
        self.timed_out = False

    def cancel(self) -> None:
        """Ask the loop to drop this request at its next step boundary."""
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
                    yield StepUpdate(deltas=deltas, rows=self.rows, prompt_truncated=self.prompt_truncated,
                                     replaced=self._replaced)
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
        """Apply what the loop has sent so far, without waiting (for a caller that runs the
        loop's steps itself, `Loop.drive`).

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
            deltas=deltas, rows=self.rows, prompt_truncated=self.prompt_truncated,
            replaced=self._replaced)
        kind, payload = messages[-1] if messages else ("step", None)
        if kind == "error":
            raise payload
        if kind == "end":
            self.timed_out = payload == "time"
        return update, kind == "end"

    def _apply(self, steps: list[list[RowUpdate]]) -> list[str] | None:
        """Apply the steps' updates to `rows`; the text each row gained (None without steps),
        and in `_replaced` which rows' texts were replaced instead (beam rows)."""
        if not steps:
            return None
        deltas = [""] * len(self.rows)
        builders = self._builders
        for updates in steps:
            for u in updates:
                delta = builders[u.row].apply(u)
                if delta:
                    deltas[u.row] += delta
        self._replaced = [False] * len(self.rows)
        for i in self._beam_rows:
            deltas[i], self._replaced[i] = builders[i].settle()
        return deltas
