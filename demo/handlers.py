"""The demo's event handlers: each checks its inputs, streams its rows from the server, and says
what went wrong as a `gr.Error` (what the user must fix is one log line, not a traceback)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

import gradio as gr

from generation import SamplingParams
from generation.sampling.params import prompt_problems
from generation.serve import Busy, Server

from .columns import ADVANCED, COLUMNS, MAX_NEW, SEED, Column, Knob, api_knobs, generate_columns
from .panel import run_record
from .view import view

MAX_PROMPT_CHARS = 4000
PANEL_CANDIDATES = 5  # what the page's runs ask per token (the API endpoints ask none)
UI_REFRESH_S = 0.05  # the browser view is redrawn at most this often (the API gets every step)


def rejected(message: str) -> gr.Error:
    """The gr.Error for a request the user must fix, logged as one line (not a traceback)."""
    print(f"app.py: rejected request: {message}", file=sys.stderr, flush=True)
    return gr.Error(message, print_exception=False)


def prompt_problem(prompt: object) -> str | None:
    """What is wrong with the prompt as received (None when it can be served)."""
    if not isinstance(prompt, str):
        return f"the prompt must be text, got {type(prompt).__name__ if prompt is not None else 'null'}"
    if not prompt.strip():
        return "the prompt is empty: type the opening of an abstract"
    if prompt_problems(prompt):  # JSON escapes can smuggle in lone surrogates
        return "the prompt is not valid Unicode text"
    if len(prompt) > MAX_PROMPT_CHARS:
        return f"the prompt has {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}"
    return None


def check_request(prompt: object, values: Sequence[tuple[Knob, object]]) -> list[int | float]:
    """Refuse a request the demo cannot serve, naming every problem once.

    Args:
        prompt: the prompt as received.
        values: (knob, value as received) pairs, in the order to report them.

    Returns:
        The values as SamplingParams takes them, in the same order.

    Raises:
        gr.Error: listing each bad input.
    """
    problem = prompt_problem(prompt)
    problems = [] if problem is None else [problem]
    checked = []
    for knob, value in values:
        number, problem = knob.check(value)
        checked.append(number)
        if problem is not None:
            problems.append(problem)
    if problems:
        raise rejected("Cannot generate: " + "; ".join(problems) + ".")
    return checked


def stream_rows(server: Server, prompt: str, params: Sequence[SamplingParams], max_new_tokens,
                candidates: int = 0) -> Iterator:
    """The request's StepUpdates, with the server's outcomes told to the user (`candidates`:
    per emitted token, that many candidates in `RowResult.candidates`; 0 = none).

    Raises:
        gr.Error: the engine refuses the settings (e.g. min-p outside [0, 1]), the server is
            busy, or the engine failed on this request.
    """
    try:
        stream = server.open(prompt, params, max_new_tokens, candidates=candidates)
    except Busy as err:
        raise rejected(f"Busy: {err}.") from err
    except ValueError as err:
        raise rejected(f"Cannot generate: {err}") from err
    if stream.handle.prompt_truncated:
        gr.Warning(f"The prompt was cut: its first {stream.handle.prompt_truncated} tokens do not fit the context.")
    try:
        yield from stream
    except Exception as err:  # noqa: BLE001 - the engine failed on this request only
        raise gr.Error(f"Generation failed: {err}") from err
    if stream.handle.timed_out:
        gr.Warning(f"Stopped at the {server.config.time_limit_s:.0f} s limit per request.")


def column_endpoint(server: Server, column: Column) -> Callable[..., Iterator[str]]:
    """The handler of `/ENDPOINT` for one column: (prompt, max_new_tokens, *its knobs) -> text."""
    knobs = api_knobs([column])

    def endpoint(prompt: str, max_new_tokens: int, *values) -> Iterator[str]:
        max_new, *checked = check_request(prompt, [(MAX_NEW, max_new_tokens), *zip(knobs, values, strict=True)])
        named = {k.name: v for k, v in zip(knobs, checked, strict=True)}
        for update in stream_rows(server, prompt, [column.params(named)], max_new):
            yield update.rows[0].text

    endpoint.__doc__ = f"API `/{column.endpoint}`: {column.summary}."
    return endpoint


def generate_endpoint(server: Server, columns: Sequence[Column] | None = None,
                      name: str = "generate") -> Callable[..., Iterator[tuple[str, ...]]]:
    """The handler of `/generate` (or of `/NAME` for other columns): (prompt, max_new_tokens,
    *their knobs) -> the columns' texts."""
    columns = generate_columns() if columns is None else list(columns)
    knobs = api_knobs(columns)

    def generate(prompt: str, max_new_tokens: int, *values) -> Iterator[tuple[str, ...]]:
        max_new, *checked = check_request(prompt, [(MAX_NEW, max_new_tokens), *zip(knobs, values, strict=True)])
        named = {k.name: v for k, v in zip(knobs, checked, strict=True)}
        for update in stream_rows(server, prompt, [c.params(named) for c in columns], max_new):
            yield tuple(row.text for row in update.rows)

    generate.__doc__ = (f"API `/{name}`: the continuations "
                        f"({', '.join(c.key for c in columns)}), growing.")
    return generate


def view_params(prompt: object, max_new_tokens: object, seed: object,
                values: Sequence[object]) -> tuple[int, list[SamplingParams]]:
    """The browser event's inputs checked (as the API's are) and made into one SamplingParams
    per column.

    Args:
        prompt, max_new_tokens, seed: as received.
        values: each column's knobs in order, then the advanced knobs, as received.

    Returns:
        (max_new_tokens, the columns' SamplingParams).

    Raises:
        gr.Error: listing each bad input (a column's knob is named with the column's title).
    """
    knobs = [replace(k, name=f"{c.title} {k.name}") for c in COLUMNS for k in c.knobs] + list(ADVANCED)
    pairs = [(MAX_NEW, max_new_tokens), (SEED, seed), *zip(knobs, values, strict=True)]
    max_new, seed, *checked = check_request(prompt, pairs)
    advanced = dict(zip((k.name for k in ADVANCED), checked[len(checked) - len(ADVANCED):], strict=True))
    params = []
    for column in COLUMNS:
        own, checked = checked[:len(column.knobs)], checked[len(column.knobs):]
        params.append(column.params({**advanced, "seed": seed,
                                     **{k.name: v for k, v in zip(column.knobs, own, strict=True)}}))
    return max_new, params


def view_handler(server: Server) -> Callable[..., Iterator[list]]:
    """The browser's handler: (prompt, max_new_tokens, seed, each column's knobs in order, the
    advanced knobs) -> per column its text, stats line and tokens shaded by probability, the
    beam columns' hypotheses, then (once, at the end) the run for the candidate panel."""
    tokenizer = server.engine.tokenizer

    def generate_view(prompt: str, max_new_tokens: int, seed: int, *values) -> Iterator[list]:
        max_new, params = view_params(prompt, max_new_tokens, seed, values)
        last, rows = 0.0, []
        for update in stream_rows(server, prompt, params, max_new, candidates=PANEL_CANDIDATES):
            rows = update.rows
            if time.monotonic() - last >= UI_REFRESH_S:
                last = time.monotonic()
                yield [*view(rows), gr.skip()]
        # The last state always, with what the panel and a fork need of the finished run.
        done = run_record(tokenizer, prompt, [max_new_tokens, seed, *values], rows)
        yield [*view(rows, [r["pieces"] for r in done["columns"]]), done]

    return generate_view
