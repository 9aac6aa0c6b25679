"""What Gradio does on its own that a public server must not: raw HTTP calls that no handler
sees (the wrong number of inputs, unknown endpoints), a record of every event ever served, and
work on its event loop that stalls every user's requests (a first event, each new session).

Gradio checks an event's inputs before the handler runs and answers a short list with a
ValueError (`{"error": null}` and a traceback in the log), and an unknown api_name or fn_index
with HTTP 500 and a traceback. Every event stays callable from outside ("private" only hides
it from the API page and gradio_client: /gradio_api/call/NAME and /gradio_api/queue/join still
run it), so each of these is answered here with one line naming the problem.
"""

from __future__ import annotations

import sys
from collections import defaultdict

import gradio as gr
from gradio.route_utils import FnIndexInferError
from gradio.routes import JSONResponse  # FastAPI's, through Gradio (the Space installs gradio only)
from gradio.state_holder import SessionState
from gradio.utils import MatplotlibBackendMananger  # Gradio's spelling

from .handlers import rejected


def _input_name(block) -> str:
    return str(getattr(block, "label", None) or type(block).__name__).split(":")[0]


def check_input_count(demo: gr.Blocks) -> None:
    """Make `demo` refuse an event whose inputs are too few or too many, as a `gr.Error`
    naming the event and what it takes (not Gradio's multi-line ValueError)."""

    def validate_inputs(block_fn, inputs: list) -> None:
        needed = block_fn.inputs
        if block_fn.fn is not None and len(inputs) != len(needed):
            takes = (f"{len(needed)} inputs ({', '.join(_input_name(b) for b in needed)})"
                     if needed else "no inputs")
            raise rejected(f"Cannot generate: /{block_fn.api_name} takes {takes}, got {len(inputs)}.")

    demo.validate_inputs = validate_inputs


def _unknown(request, err: Exception) -> JSONResponse:
    endpoint = request.path_params.get("api_name")
    where = f"/{endpoint}" if endpoint else "that fn_index"
    message = f"no endpoint {where}: see /gradio_api/info for the endpoints"
    print(f"app.py: rejected request: {message}", file=sys.stderr, flush=True)
    return JSONResponse({"detail": message, "error": message}, status_code=404)


# Passed to the FastAPI app Gradio builds (`launch(app_kwargs=...)`).
APP_KWARGS = {"exception_handlers": {FnIndexInferError: _unknown, KeyError: _unknown}}


FINISHED = ("success", "failed", "cancelled")


class RecentEvents(dict):
    """Gradio's per-event analytics (`Queue.event_analytics`), keeping the last `keep` finished
    events: Gradio keeps one entry per event for the server's life."""

    def __init__(self, keep: int = 1000):
        super().__init__()
        self.keep = keep

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        if len(self) > 2 * self.keep:  # prune in batches: O(1) per event
            done = [k for k, v in self.items() if isinstance(v, dict) and v.get("status") in FINISHED]
            for k in done[:len(self) - self.keep]:
                del self[k]


class _Pruned:
    """A container of Gradio's that drops what it no longer needs in batches: once it holds
    `_prune_at` entries, `_prune()` runs and the next batch starts at twice what is left (at
    least `floor`), so each entry costs O(1) on average."""

    def __init__(self, *args, floor: int):
        super().__init__(*args)
        self.floor = floor
        self._prune_at = floor

    def _maybe_prune(self) -> None:
        if len(self) >= self._prune_at:
            self._prune()
            self._prune_at = max(self.floor, 2 * len(self))

    def _prune(self) -> None:
        raise NotImplementedError


class LiveTasks(_Pruned, list):
    """Gradio's list of its events' tasks (`Queue._asyncio_tasks`, kept to cancel them at
    shutdown), dropping the finished ones: Gradio appends every event's task and never removes
    one, so each finished task (its coroutine, context and name) stays for the server's life."""

    def __init__(self, floor: int = 256):
        super().__init__(floor=floor)

    def append(self, task) -> None:
        self._maybe_prune()
        super().append(task)

    def _prune(self) -> None:
        self[:] = [t for t in self if not t.done()]


class PendingEvents(_Pruned, dict):
    """Gradio's events by id (`Queue.event_ids_to_events`), dropping those no session waits for:
    Gradio removes an event only when it is cancelled before it starts, so every event served
    (its data, and its request with the HTTP connection's objects) stays for the server's life.

    An event is wanted while its id is in its session's `pending_event_ids_session` (from join
    until its client was sent the result, or the session was cleaned): Gradio looks events up
    by those ids when a client goes away. /stream/ID also looks one up, for streaming inputs,
    which this demo has none of (an unknown id is a 404 through APP_KWARGS).
    """

    def __init__(self, pending: dict, floor: int = 256):
        super().__init__(floor=floor)
        self.pending = pending  # session hash -> the ids of its events not yet answered

    def __setitem__(self, key, event) -> None:
        super().__setitem__(key, event)
        self._maybe_prune()

    def _prune(self) -> None:
        for k in [k for k, e in self.items() if k not in self.pending.get(e.session_hash, ())]:
            del self[k]


class SessionStreams(_Pruned, dict):
    """One session's `Blocks.pending_streams`: its generator runs' media streams, keyed by
    id(iterator). Gradio adds an entry per run of a generator handler and never removes it; it
    stays empty unless an output streams media (none here), and an empty one is made again on
    demand, so the empty ones are dropped."""

    def __init__(self, floor: int = 64):
        super().__init__(floor=floor)

    def __setitem__(self, run, streams) -> None:
        self._maybe_prune()
        super().__setitem__(run, streams)

    def _prune(self) -> None:
        for k in [k for k, v in self.items() if not v]:
            del self[k]


def bound_event_log(demo: gr.Blocks) -> None:
    """After `demo.queue(...)`: keep what Gradio holds per event to the recent and the pending
    events, and never summarize the analytics.

    Gradio 6.17 keeps, for every event served, its analytics record, its Event (with the
    request), its finished task and an entry in its session's streams, for the server's life:
    about 2.3 MiB of RSS per 100 `/generate` requests here (README). It also builds a pandas
    DataFrame of every event's analytics after each event (for its monitoring page, which this
    demo does not serve): O(events) of work, holding the GIL, per request."""
    queue = demo._queue
    queue.event_analytics = RecentEvents()
    queue.ANAYLTICS_CACHE_FREQUENCY = sys.maxsize  # Gradio's spelling
    queue._asyncio_tasks = LiveTasks()
    queue.event_ids_to_events = PendingEvents(queue.pending_event_ids_session)
    demo.pending_streams = defaultdict(SessionStreams)


def import_matplotlib_now() -> None:
    """Import what Gradio's first event would import on the event loop, now.

    Gradio switches matplotlib's backend around every event (for plots; this demo has none),
    and the first switch imports matplotlib and pyplot: on a 2-core box during a storm of
    users, 0.66 s in which the event loop answered nothing. Without matplotlib, nothing.
    """
    with MatplotlibBackendMananger():
        pass


class LazyBlockConfigs(dict):
    """A session's `SessionState.config_values` (every block's config, for Gradio's deep
    links), each block's entry made when it is first read, updated or listed.

    Args:
        blocks_config: the session's BlocksConfig.
        ids: the ids Gradio would have made an entry for.
    """

    def __init__(self, blocks_config, ids: list[int]):
        super().__init__()
        self._blocks_config, self._ids = blocks_config, ids

    def _fill(self) -> None:
        blocks = self._blocks_config.blocks
        for key in self._ids:
            if not super().__contains__(key) and key in blocks:
                super().__setitem__(key, self._blocks_config.config_for_block(key, [], blocks[key]))

    def items(self):
        self._fill()
        return super().items()

    def values(self):
        self._fill()
        return super().values()

    def keys(self):
        self._fill()
        return super().keys()

    def __iter__(self):
        self._fill()
        return super().__iter__()

    def __len__(self) -> int:
        self._fill()
        return super().__len__()


class _NoBlocks:
    """What SessionState.__init__ reads of a Blocks, with no blocks to make configs for."""

    def __init__(self, blocks: gr.Blocks):
        self.default_config, self.blocks = blocks.default_config, {}


def lazy_session_configs() -> None:
    """Make Gradio's new sessions cheap: each block's config is made when it is first needed
    (the outputs an event updates; every block only for a deep link) instead of all ~100 at
    once when a session starts, on the event loop, in the join of its first event: ~7 ms of
    CPU per new user, 27 ms of the loop's time with the decoding thread on the GIL, one join
    after another (52 new sessions in the storm: 1.4 s). Process-wide; once is enough."""
    if getattr(SessionState.__init__, "lazy_configs", False):
        return
    gradio_init = SessionState.__init__

    def __init__(self, blocks) -> None:
        gradio_init(self, _NoBlocks(blocks))
        self.config_values = LazyBlockConfigs(
            self.blocks_config, [k for k in self.blocks_config.blocks if k in blocks.blocks])

    __init__.lazy_configs, __init__.gradio_init = True, gradio_init
    SessionState.__init__ = __init__
