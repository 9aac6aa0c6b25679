"""Serving policy: how a server's requests reach the engine (no web framework here).

`Server(engine, ServeConfig)` is what a front end (the Gradio demo) holds: in "batched" mode
one `Loop` decodes every request's rows together; in "per-request" mode each request runs a
batch of its own on the caller's thread (kept to compare the two: bench/serve.py). Both modes
stop a request at the same time cap (the loop's deadline) and report the same stats.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from .handle import Handle
from .loop import Busy, Loop, run_alone
from .sampling.params import SamplingParams, StepUpdate

__all__ = ["Busy", "ServeConfig", "Server", "Stream", "rss_mib"]


@dataclass(frozen=True)
class ServeConfig:
    """How a server serves its requests.

    Attributes:
        mode: "batched" (one loop for every request) or "per-request" (each its own batch).
        max_rows: rows decoding at once over all requests (batched).
        cache_mb: memory for the rows' caches, which caps the rows (batched; None: a quarter
            of the machine's memory).
        queue_size: requests waiting for rows beyond which a request is refused with `Busy`.
        time_limit_s: a request stops after this many seconds (what it has so far is kept).
        prefill_budget: prompt tokens prefilled per step while other rows decode, in whole
            chunks (batched; it changes how fast a long prompt gets in, never a row's text).
        stream_interval_s: a request's updates are merged within at least this interval
            (batched), longer under load.
        concurrency: requests served at once (per-request; the front end enforces it).
    """

    mode: str = "batched"
    max_rows: int = 48
    cache_mb: float | None = None
    queue_size: int = 64
    time_limit_s: float = 120.0
    prefill_budget: int | None = None
    stream_interval_s: float = 0.03
    concurrency: int = field(default_factory=lambda: os.cpu_count() or 1)

    @property
    def batched(self) -> bool:
        """True unless mode is "per-request"."""
        return self.mode != "per-request"


@dataclass
class Stream:
    """One request being served: iterate it for its StepUpdates.

    Attributes:
        handle: the request's handle (`prompt_truncated`; `timed_out` once it ended).
        updates: the StepUpdates.
    """

    handle: Handle
    updates: Iterator[StepUpdate]

    def __iter__(self) -> Iterator[StepUpdate]:
        return self.updates


class Server:
    """Serves one engine's requests with one policy.

    Args:
        engine: the loaded model (shared, read-only, by every request).
        config: the policy.
    """

    def __init__(self, engine, config: ServeConfig = ServeConfig()):
        self.engine = engine
        self.config = config
        self.loop = None
        if config.batched:
            self.loop = Loop(engine, max_rows=config.max_rows, cache_mb=config.cache_mb,
                             queue_size=config.queue_size, time_limit_s=config.time_limit_s,
                             prefill_budget=config.prefill_budget)

    def open(self, prompt: str, params: Sequence[SamplingParams], max_new_tokens: int,
             candidates: int = 0) -> Stream:
        """Start a request.

        Args:
            prompt, params, max_new_tokens, candidates: as for `Engine.stream`.

        Returns:
            Its stream.

        Raises:
            ValueError: a bad request (at once).
            Busy: the server's wait queue is full.
        """
        if self.loop is None:
            prepared = self.engine.prepare(prompt, params, max_new_tokens, None, candidates)
            handle, updates = run_alone(self.engine, prepared, self.config.time_limit_s)
            return Stream(handle, updates)
        handle = self.loop.submit(prompt, params, max_new_tokens, None, candidates)
        return Stream(handle, handle.updates(self._interval))

    def _interval(self) -> float:
        # Each update costs a web server a few ms of CPU (Gradio: ~4 ms, more than a decoding
        # step): the interval grows with the requests streaming (16 ms each) so that the server
        # keeps to about a quarter of one core whatever the load, and the cores go to the model.
        return max(self.config.stream_interval_s, 0.016 * self.loop.running_requests)

    def stats(self) -> dict:
        """The mode, the loop's counters (rows in flight, requests queued, ...) and the RSS."""
        loop = {} if self.loop is None else self.loop.stats()
        return {"serving": self.config.mode, **loop, "rss_mib": rss_mib()}


def rss_mib(pid: int | str = "self", field: str = "VmRSS") -> float:
    """A process's resident memory (VmRSS) or its peak so far (VmHWM), in MiB; 0 if unknown.

    Args:
        pid: the process id, or "self".
        field: "VmRSS" or "VmHWM" (a line of /proc/PID/status).
    """
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0
