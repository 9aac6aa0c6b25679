"""One decoding loop for every request: continuous batching on one thread.

A step is three verbs, as in nano-vllm's `LLMEngine.step`: `scheduler.schedule()` decides the
work, `executor.execute(plan)` runs the model and draws the tokens, and
`scheduler.update_from_output(plan, sampled)` turns them into each request's messages. Around
that the loop owns what serving needs: the thread, the inbox, `Busy` beyond `queue_size`
waiting requests, deadlines and cancellation. The loop's thread owns the runner and its cache;
callers only talk to it through queues: `submit` puts a request in the inbox and returns a
`Handle` that reads the request's own queue (and detokenizes on the caller's thread).
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
from collections.abc import Iterator

from .execute import Executor
from .handle import Handle
from .request import Prepared, Request, slots_of
from .runners.base import rows_that_fit
from .sampling.params import StepUpdate
from .scheduler import Scheduler


class Busy(RuntimeError):
    """The wait queue is full: the caller should try again in a moment."""


class Loop:
    """Serves many requests from one model with one batched forward per step.

    Args:
        model: the loaded model (a `model.Model`, e.g. an Engine).
        max_rows: rows decoding or prefilling at once (a 3-column request is 3 rows).
        cache_mb: memory for the rows' caches (allocated once, every row at full context);
            max_rows is lowered to what fits. None: a quarter of the machine's memory.
        queue_size: requests waiting for rows beyond which `submit` raises `Busy`.
        time_limit_s: a request ends (its handle's `timed_out` set) after this many seconds.
        prefill_budget: prompt tokens prefilled per step while other rows decode, in whole
            chunks (`scheduler.prefill_chunk`; default: one chunk). It changes how fast a
            long prompt gets in, never a row's tokens.
        capacity: tokens a row may hold (default: the model's context).
        threaded: run the loop on a thread of its own (serving); False for `drive`, which runs
            one request's steps on the caller's thread (Engine.stream: no hand-off per step).
    """

    def __init__(self, model, *, max_rows: int = 48, cache_mb: float | None = None,
                 queue_size: int = 64, time_limit_s: float | None = 120.0,
                 prefill_budget: int | None = None, capacity: int | None = None,
                 threaded: bool = True):
        self.model = model
        runner, capacity = model.runner, capacity or model.context_size
        max_rows = rows_that_fit(runner, capacity, max_rows, cache_mb)
        self.scheduler = Scheduler(max_rows, model.eos_ids, ragged=runner.ragged,
                                   chunked=runner.chunked_prefill, prefill_graph=runner.prefill_graph,
                                   prefill_budget=prefill_budget)
        self.executor = Executor(runner, max_rows + 1, capacity, model.vocab_size,  # + the spare
                                 model.eos_ids)
        self.queue_size = queue_size
        self.time_limit_s = time_limit_s
        self.steps = 0
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._queued = 0  # submitted, not yet admitted (guarded by _lock)
        self._lock = threading.Lock()
        self._thread = None
        if threaded:
            self._thread = threading.Thread(target=self._run, name="generation-loop", daemon=True)
            self._thread.start()

    @property
    def max_rows(self) -> int:
        """Rows in flight at most (lowered to what the cache memory holds)."""
        return self.scheduler.max_rows

    @property
    def rows_in_flight(self) -> int:
        """Rows decoding or being prefilled (read from any thread; exact at step boundaries)."""
        return self.scheduler.rows_in_flight

    @property
    def running_requests(self) -> int:
        """Requests decoding now (read from any thread)."""
        return len(self.scheduler.running)

    # -- the callers' side (any thread) --------------------------------------------------------

    def submit(self, prompt: str | None, params, max_new_tokens: int = 64,
               token_ids=None, candidates: int = 0) -> Handle:
        """Queue a request; its rows join the running batch at a coming step.

        Args:
            prompt, params, max_new_tokens, token_ids, candidates: as for `Model.prepare`.

        Returns:
            The request's handle: iterate it for one StepUpdate per step.

        Raises:
            ValueError: a bad request (at once), or more rows than `max_rows`.
            Busy: `queue_size` requests are already waiting.
        """
        return self.enqueue(self.model.prepare(prompt, params, max_new_tokens, token_ids, candidates))

    def enqueue(self, prepared: Prepared) -> Handle:
        """`submit` for a request already checked by `Model.prepare`.

        Raises:
            ValueError: more rows than `max_rows` (a beam row counts num_beams).
            Busy: `queue_size` requests are already waiting.
        """
        rows = slots_of(prepared.params)
        if rows > self.max_rows:
            raise ValueError(f"a request may have at most {self.max_rows} rows (a beam row counts "
                             f"num_beams), got {rows}")
        deadline = (time.monotonic() + self.time_limit_s) if self.time_limit_s else float("inf")
        request = Request(prepared, deadline)
        with self._lock:
            if self._queued >= self.queue_size:
                raise Busy(f"the server is busy ({self._queued} requests waiting); try again in a moment")
            self._queued += 1
        self._inbox.put(request)
        return Handle(request, self.model.tokenizer)

    def stats(self) -> dict:
        """Rows in flight (now and at most), requests waiting / prefilling / running, steps run
        so far, the seconds spent in the forward passes and in the sampler, the most rows drawn
        in one step."""
        s = self.scheduler
        return {"rows": self.rows_in_flight, "max_rows": self.max_rows, "queued": self._queued,
                "prefilling": len(s.prefilling), "running": len(s.running), "steps": self.steps,
                **self.executor.timing}

    def close(self) -> None:
        """Stop the loop after the current step (requests in flight end with an error)."""
        if self._thread is not None:
            self._inbox.put(None)
            self._thread.join(timeout=30)

    def drive(self, handle: Handle) -> Iterator[StepUpdate]:
        """Run a request to its end on the caller's thread (a loop made with threaded=False):
        the same steps as the loop's thread runs, one StepUpdate per step.

        Args:
            handle: what `enqueue` returned for the request.
        """
        self._take_inbox()
        try:
            while True:
                self.step()
                update, ended = handle.read_now()
                if update is not None:
                    yield update
                if ended:
                    return
        finally:
            handle.cancel()

    # -- the loop (its thread only, or drive's caller) -----------------------------------------

    def step(self) -> None:
        """One step: drop ended requests, schedule, execute, update every row."""
        scheduler = self.scheduler
        try:
            self._drop_ended()
            plan = scheduler.schedule()
            if plan.admitted:
                self._unqueue(plan.admitted)
            sampled = self.executor.execute(plan)
            self._deliver(scheduler.update_from_output(plan, sampled))
            self.steps += 1
        except Exception as err:  # noqa: BLE001 - a failed batched forward ends its requests, not the server
            traceback.print_exc()
            for req in scheduler.running + scheduler.prefilling:
                self._deliver(scheduler.abort(req, error=err))

    def _run(self) -> None:
        while self._take_inbox():
            self.step()
        late = []  # submitted after close() was called
        while not self._inbox.empty():
            late.append(self._inbox.get_nowait())
        s = self.scheduler
        for req in list(s.waiting) + s.running + s.prefilling + [r for r in late if r]:
            self._deliver(s.abort(req, error=RuntimeError("the scheduler was closed")))

    def _take_inbox(self) -> bool:
        """Move submitted requests to the scheduler; block while there is nothing to do."""
        s = self.scheduler
        idle = not (s.waiting or s.prefilling or s.running)
        while True:
            try:
                item = self._inbox.get(block=idle)
            except queue.Empty:
                return True
            if item is None:
                return False
            s.waiting.append(item)
            idle = False

    def _drop_ended(self) -> None:
        """End the requests that were cancelled or ran out of time (their rows free at once)."""
        now, s = time.monotonic(), self.scheduler
        for req in [r for r in s.waiting if r.cancelled or now > r.deadline]:
            self._unqueue(1)
            self._deliver(s.abort(req, "cancelled" if req.cancelled else "time"))
        for req in [r for r in s.running + s.prefilling if r.cancelled or now > r.deadline]:
            self._deliver(s.abort(req, "cancelled" if req.cancelled else "time"))

    def _deliver(self, messages) -> None:
        for req, message in messages:
            req.out.put(message)
            if message[0] != "step":
                req.done.set()

    def _unqueue(self, n: int) -> None:
        with self._lock:
            self._queued -= n


def run_alone(model, prepared: Prepared, time_limit_s: float | None = None
              ) -> tuple[Handle, Iterator[StepUpdate]]:
    """One request as a batch of its own: a loop sized to it (its rows, its prompt +
    max_new_tokens), driven on the caller's thread.

    Returns:
        (its handle, its StepUpdates as they are computed).
    """
    loop = Loop(model, max_rows=slots_of(prepared.params), queue_size=1, time_limit_s=time_limit_s,
                capacity=len(prepared.ids) + prepared.max_new_tokens, threaded=False)
    handle = loop.enqueue(prepared)
    return handle, loop.drive(handle)
