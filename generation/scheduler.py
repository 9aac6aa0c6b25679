"""One decoding loop for every request: continuous batching on one thread.

The shape of vLLM's v1 scheduler. Requests wait in `waiting`; each step `schedule()` admits
them within the budgets (rows in flight, one prompt chunk of prefill work per step while other
rows decode), then ONE batched forward runs every unfinished row of every running request,
then `update_from_output()` picks each row's token, retires finished rows at once (the last
slots move into the holes, so decoding rows stay packed in slots 0..B-1) and sends each
request its update. The loop's thread owns the runner and its cache; callers only talk to it
through queues: `submit` puts a request in the inbox and returns a `Handle` that reads the
request's own queue.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
import traceback
from collections.abc import Iterator

import numpy as np

from .engine import Engine, Prepared
from .handle import Handle, Request, RowUpdate
from .params import StepUpdate
from .rows import RowState
from .runners.base import rows_that_fit
from .sampler import select_next

# Prompt tokens per prefill call. Every caller (the app, Engine.stream) uses the same chunks, so
# a prompt's cache holds the same numbers whichever way it was served.
PREFILL_CHUNK = 64


class Busy(RuntimeError):
    """The wait queue is full: the caller should try again in a moment."""


class Scheduler:
    """Serves many requests from one engine with one batched forward per step.

    Args:
        engine: the loaded model.
        max_rows: rows decoding or prefilling at once (a 3-column request is 3 rows).
        cache_mb: memory for the rows' caches (allocated once, every row at full context);
            max_rows is lowered to what fits. None: a quarter of the machine's memory.
        queue_size: requests waiting for rows beyond which `submit` raises `Busy`.
        time_limit_s: a request ends (its handle's `timed_out` set) after this many seconds.
        prefill_chunk: prompt tokens prefilled per step while other rows decode.
        capacity: tokens a row may hold (default: the model's context).
        threaded: run the loop on a thread of its own (serving); False for `drive`, which runs
            one request's steps on the caller's thread (Engine.stream: no hand-off per step).
    """

    def __init__(self, engine: Engine, *, max_rows: int = 48, cache_mb: float | None = None,
                 queue_size: int = 64, time_limit_s: float | None = 120.0,
                 prefill_chunk: int = PREFILL_CHUNK, capacity: int | None = None,
                 threaded: bool = True):
        self.engine = engine
        runner, capacity = engine.runner, capacity or engine.context_size
        self.max_rows = rows_that_fit(runner, capacity, max_rows, cache_mb)
        self.runner = runner
        self.cache = runner.new_cache(self.max_rows + 1, capacity)  # + the spare slot
        for array in getattr(self.cache, "arrays", ()):
            # Touch every page now: the cache is allocated once and a server must hold all of it
            # anyway; left to first use, each new slot's page faults (zero-filled huge pages)
            # cost tens of ms in the middle of a step, and RSS would creep up as slots are used.
            array.fill(0)
        self.queue_size = queue_size
        self.time_limit_s = time_limit_s
        self.chunk = prefill_chunk if runner.chunked_prefill else None
        self.waiting: collections.deque[Request] = collections.deque()
        self.prefilling: list[Request] = []
        self.running: list[Request] = []
        self.slots: list[tuple[Request, int]] = []  # the row in each decoding slot 0..B-1
        self.tokens = np.zeros(self.max_rows, dtype=np.int64)  # each decoding slot's last token
        self.steps = 0
        self.timing = {"forward_s": 0.0, "sample_s": 0.0, "rows_peak": 0}
        self._eos = set(engine.eos_ids)
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._queued = 0  # submitted, not yet admitted (guarded by _lock)
        self._lock = threading.Lock()
        self._thread = None
        if threaded:
            self._thread = threading.Thread(target=self._loop, name="generation-scheduler", daemon=True)
            self._thread.start()

    # -- the callers' side (any thread) --------------------------------------------------------

    def submit(self, prompt: str | None, params, max_new_tokens: int = 64,
               token_ids=None) -> Handle:
        """Queue a request; its rows join the running batch at a coming step.

        Args:
            prompt, params, max_new_tokens, token_ids: as for `Engine.prepare`.

        Returns:
            The request's handle: iterate it for one StepUpdate per step.

        Raises:
            ValueError: a bad request (at once), or more rows than `max_rows`.
            Busy: `queue_size` requests are already waiting.
        """
        return self.enqueue(self.engine.prepare(prompt, params, max_new_tokens, token_ids))

    def enqueue(self, prepared: Prepared) -> Handle:
        """`submit` for a request already checked by `Engine.prepare`.

        Raises:
            ValueError: more rows than `max_rows`.
            Busy: `queue_size` requests are already waiting.
        """
        if len(prepared.params) > self.max_rows:
            raise ValueError(f"a request may have at most {self.max_rows} rows, got {len(prepared.params)}")
        deadline = (time.monotonic() + self.time_limit_s) if self.time_limit_s else float("inf")
        request = Request(prepared, deadline)
        with self._lock:
            if self._queued >= self.queue_size:
                raise Busy(f"the server is busy ({self._queued} requests waiting); try again in a moment")
            self._queued += 1
        self._inbox.put(request)
        return Handle(request)

    @property
    def rows_in_flight(self) -> int:
        """Rows decoding or being prefilled (read from any thread; exact at step boundaries)."""
        return len(self.slots) + sum(len(r.prepared.params) for r in self.prefilling)

    def stats(self) -> dict:
        """Rows in flight (now and at most), requests waiting / prefilling / running, steps run
        so far, and the seconds spent in the forward passes and in the sampler."""
        return {"rows": self.rows_in_flight, "max_rows": self.max_rows, "queued": self._queued,
                "prefilling": len(self.prefilling), "running": len(self.running), "steps": self.steps,
                **self.timing}

    def close(self) -> None:
        """Stop the loop after the current step (requests in flight end with an error)."""
        if self._thread is not None:
            self._inbox.put(None)
            self._thread.join(timeout=30)

    def drive(self, prepared: Prepared) -> Iterator[StepUpdate]:
        """Run one request to its end on the caller's thread (a scheduler made with
        threaded=False): the same schedule / forward / update steps as the loop, one StepUpdate
        per step."""
        handle = self.enqueue(prepared)
        self._take_inbox()
        try:
            while True:
                self._step()
                update, ended = handle.read_now()
                if update is not None:
                    yield update
                if ended:
                    return
        finally:
            handle.cancel()

    # -- the loop (the scheduler's thread only) ------------------------------------------------

    def _loop(self) -> None:
        while self._take_inbox():
            self._step()
        late = []  # submitted after close() was called
        while not self._inbox.empty():
            late.append(self._inbox.get_nowait())
        for req in list(self.waiting) + self.running + self.prefilling + [r for r in late if r]:
            self._end(req, error=RuntimeError("the scheduler was closed"))

    def _step(self) -> None:
        """One step: drop ended requests, schedule, one batched forward, update every row."""
        try:
            self._drop_ended()
            joined = self.schedule()
            before = len(self.slots) - sum(len(r.rows) for r, _ in joined)
            tick = time.perf_counter()
            outs = [self.runner.step(self.cache, self.tokens[:before])] if before else []
            self.timing["forward_s"] += time.perf_counter() - tick
            outs += [np.repeat(logits[None], len(req.rows), axis=0) for req, logits in joined]
            if outs:  # one array (no request joined) needs no copy
                self.update_from_output(outs[0] if len(outs) == 1 else np.concatenate(outs))
            self.steps += 1
        except Exception as err:  # noqa: BLE001 - a failed batched forward ends its requests, not the server
            traceback.print_exc()
            for req in self.running + self.prefilling:
                self._end(req, error=err)

    def _take_inbox(self) -> bool:
        """Move submitted requests to `waiting`; block while there is nothing to do."""
        idle = not (self.waiting or self.prefilling or self.running)
        while True:
            try:
                item = self._inbox.get(block=idle)
            except queue.Empty:
                return True
            if item is None:
                return False
            self.waiting.append(item)
            idle = False

    def _drop_ended(self) -> None:
        """End the requests that were cancelled or ran out of time (their rows free at once)."""
        now = time.monotonic()
        for req in [r for r in self.waiting if r.cancelled or now > r.deadline]:
            self.waiting.remove(req)
            self._unqueue()
            self._end(req, reason="time" if not req.cancelled else "cancelled")
        for req in [r for r in self.running + self.prefilling if r.cancelled or now > r.deadline]:
            self._end(req, reason="time" if not req.cancelled else "cancelled")

    def schedule(self) -> list[tuple[Request, np.ndarray]]:
        """Admit waiting requests within the budgets and run this step's prefill work.

        Returns:
            The requests whose prompt is now complete, with its last position's logits; their
            rows were placed in the decoding slots after those that decode this step.
        """
        while self.waiting and (self.runner.ragged or not (self.running or self.prefilling)):
            req = self.waiting[0]
            if self.rows_in_flight + len(req.prepared.params) > self.max_rows:
                break  # first come, first served: nobody overtakes the head of the queue
            self.waiting.popleft()
            self._unqueue()
            req.rows = [RowState(p, req.prepared.ids, self.engine.tokenizer, self.engine.vocab_size)
                        for p in req.prepared.params]
            req.stage = self._free_slot()
            self.prefilling.append(req)
        # Chunk boundaries depend on the request alone (a row's numbers must not depend on
        # its neighbours); the budget only decides how many chunks run this step. Shortest
        # remaining prompt first, so a new short request starts within a step.
        budget = self.chunk if self.slots and self.chunk else float("inf")
        joined = []
        for req in sorted(self.prefilling, key=lambda r: len(r.prepared.ids) - r.prefilled):
            while budget > 0 and req.prefilled < len(req.prepared.ids):
                piece = req.prepared.ids[req.prefilled:req.prefilled + (self.chunk or len(req.prepared.ids))]
                try:
                    logits = self.runner.prefill(self.cache, req.stage, piece)[-1]
                except Exception as err:  # noqa: BLE001 - this request's error, not the server's
                    self._end(req, error=err)
                    break
                req.prefilled += len(piece)
                budget -= len(piece)
                if req.prefilled == len(req.prepared.ids):
                    self._join(req)
                    joined.append((req, logits))
        return joined

    def _join(self, req: Request) -> None:
        """Put a prefilled request's rows in the next decoding slots (its prompt cache copied)."""
        first, n = len(self.slots), len(req.rows)
        targets = range(first, first + n)
        # The prompt steps aside into the spare slot (no row ever holds it), so other prompts
        # parked where these rows go can always be moved out of the way first.
        self.cache.move(req.stage, self.max_rows)
        self.prefilling.remove(req)
        req.stage = None
        for other in self.prefilling:
            if other.stage in targets:
                slot = self._free_slot(exclude=targets)
                self.cache.move(other.stage, slot)
                other.stage = slot
        self.cache.move(self.max_rows, first)
        for slot in targets[1:]:
            self.cache.copy(first, slot)
        self.slots += [(req, i) for i in range(n)]
        self.running.append(req)

    def update_from_output(self, logits: np.ndarray) -> None:
        """Pick every decoding row's token, send each request its update, retire finished rows."""
        rows = [req.rows[i] for req, i in self.slots]
        tick = time.perf_counter()
        tokens, probs = select_next(logits, [r.params for r in rows], [r.rng for r in rows],
                                    [r.seen for r in rows])
        self.timing["sample_s"] += time.perf_counter() - tick
        self.timing["rows_peak"] = max(self.timing["rows_peak"], len(rows))
        self.tokens[:len(tokens)] = tokens
        by_request: dict[Request, list[int]] = {}
        for slot, (req, _) in enumerate(self.slots):
            by_request.setdefault(req, []).append(slot)
        for req, slots in by_request.items():
            try:
                self._accept(req, slots, tokens, probs)
            except Exception as err:  # noqa: BLE001 - this request's error, not the server's
                self._end(req, error=err, retire=False)
        self._retire([s for s, (req, i) in enumerate(self.slots) if req.rows[i].result.finished
                      or req.ended])

    def _accept(self, req: Request, slots: list[int], tokens: np.ndarray, probs: np.ndarray) -> None:
        now = time.perf_counter() - req.prepared.start
        updates = []
        for slot in slots:
            i = self.slots[slot][1]
            row = req.rows[i]
            last = row.result.stats.new_tokens + 1 == req.prepared.max_new_tokens
            delta = row.accept(int(tokens[slot]), float(probs[slot]), now, self._eos, last)
            updates.append(RowUpdate.of(i, row.result, delta))
        req.out.put(("step", updates))
        if all(r.result.finished for r in req.rows):
            self._end(req, reason="done", retire=False)

    def _retire(self, freed: list[int]) -> None:
        """Free slots at once: the last live slots move into the holes."""
        if not freed:
            return
        gone = set(freed)
        keep = len(self.slots) - len(gone)
        holes = [s for s in freed if s < keep]
        movers = [s for s in range(keep, len(self.slots)) if s not in gone]
        for hole, src in zip(holes, movers, strict=True):
            self.cache.move(src, hole)
            self.slots[hole] = self.slots[src]
            self.tokens[hole] = self.tokens[src]
        for slot in range(keep, len(self.slots)):
            if slot in gone:
                self.cache.clear(slot)
        del self.slots[keep:]

    def _end(self, req: Request, reason: str = "done", error: BaseException | None = None,
             retire: bool = True) -> None:
        """Tell the request it ended and free its slots (`retire=False`: the caller retires its
        decoding rows, as `update_from_output` does for all finished rows at once)."""
        if req.ended:
            return
        req.ended = True
        req.out.put(("error", error) if error is not None else ("end", reason))
        req.done.set()
        if req in self.prefilling:
            self.prefilling.remove(req)
            if req.stage is not None:
                self.cache.clear(req.stage)
        if req in self.running:
            self.running.remove(req)
        if retire:
            self._retire([s for s, (r, _) in enumerate(self.slots) if r is req])

    def _unqueue(self) -> None:
        with self._lock:
            self._queued -= 1

    def _free_slot(self, exclude=()) -> int:
        """The highest slot neither decoding nor holding a prompt (prompts park at the top)."""
        used = {r.stage for r in self.prefilling} | set(exclude)
        return next(s for s in range(self.max_rows - 1, len(self.slots) - 1, -1) if s not in used)


