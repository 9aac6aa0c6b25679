"""What Gradio does on its own that a public server must not: raw HTTP calls that no handler
sees (the wrong number of inputs, unknown endpoints), and a record of every event ever served.

Gradio checks an event's inputs before the handler runs and answers a short list with a
ValueError (`{"error": null}` and a traceback in the log), and an unknown api_name or fn_index
with HTTP 500 and a traceback. Every event stays callable from outside ("private" only hides
it from the API page and gradio_client: /gradio_api/call/NAME and /gradio_api/queue/join still
run it), so each of these is answered here with one line naming the problem.
"""

from __future__ import annotations

import sys

import gradio as gr
from fastapi import Request
from fastapi.responses import JSONResponse
from gradio.route_utils import FnIndexInferError

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


def _unknown(request: Request, err: Exception) -> JSONResponse:
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


def bound_event_log(demo: gr.Blocks) -> None:
    """After `demo.queue(...)`: keep Gradio's analytics of the recent events only, and never
    summarize them. Gradio builds a pandas DataFrame of every event so far after each event
    (for its monitoring page, which this demo does not serve): O(events) of work, holding the
    GIL, per request, and memory that grows with the server's age."""
    queue = demo._queue
    queue.event_analytics = RecentEvents()
    queue.ANAYLTICS_CACHE_FREQUENCY = sys.maxsize  # Gradio's spelling

