"""Raw HTTP calls of every event, the browser's private ones included, against a real server:
each refusal is one error naming the problem and one log line, never a traceback."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from demo.columns import ADVANCED, COLUMNS, MAX_NEW, SEED, TEMPERATURE, TOP_K, TOP_P
from generation.sampling.pipeline import WARPERS

PROMPT = "In this paper, we propose a new method for"
GOOD = {"generate": [PROMPT, 8, 0.8, 40, 0.9, 0], "greedy": [PROMPT, 8],
        "sample": [PROMPT, 8, 0.8, 0], "top_k_top_p": [PROMPT, 8, 0.8, 40, 0.9, 0]}


def view_inputs(**changes) -> list:
    """The browser event's inputs (prompt, max_new_tokens, seed, each column's knobs, the
    advanced knobs) at their defaults, with `changes` by name (a column knob: `TITLE name`)."""
    names = ["prompt", MAX_NEW.name, SEED.name]
    values = [PROMPT, 8, 0]
    for column in COLUMNS:
        names += [f"{column.title} {k.name}" for k in column.knobs]
        values += [k.default for k in column.knobs]
    names += [k.name for k in ADVANCED]
    values += [k.default for k in ADVANCED]
    for name, value in changes.items():
        values[names.index(name)] = value
    return values


def call(server, api_name: str, data: list) -> tuple[str, dict | list | None]:
    """POST /gradio_api/call/NAME, read its event stream: (the last event, its data)."""
    with httpx.Client(base_url=server.url, timeout=60) as http:
        posted = http.post(f"gradio_api/call/{api_name}", json={"data": data})
        assert posted.status_code == 200, posted.text
        event_id = posted.json()["event_id"]
        text = http.get(f"gradio_api/call/{api_name}/{event_id}").text
    events = [block for block in text.strip().split("\n\n") if block]
    kind, _, payload = events[-1].partition("\n")
    return kind.removeprefix("event: "), json.loads(payload.removeprefix("data: "))


def refusal(server, api_name: str, data: list) -> str:
    """The error message of a call that must be refused, checked to be logged as one line."""
    kind, payload = call(server, api_name, data)
    assert kind == "error" and payload and payload.get("error"), (kind, payload)
    message = payload["error"]
    log = server.log.read_text()
    assert f"app.py: rejected request: {message}" in log.splitlines(), message
    assert "Traceback" not in log
    return message


@pytest.mark.parametrize("api_name", sorted(GOOD))
def test_too_few_inputs_name_what_the_endpoint_takes(server, api_name):
    message = refusal(server, api_name, GOOD[api_name][:1])
    assert f"/{api_name} takes {len(GOOD[api_name])} inputs" in message and "got 1" in message


def test_the_private_view_events_check_their_inputs(server):
    for api_name in ("generate_view", "generate_view_submit"):
        assert "takes" in refusal(server, api_name, [PROMPT, 8])
        for bad in ("nan", None, "inf", [0.1]):
            message = refusal(server, api_name, view_inputs(min_p=bad))
            assert "min_p must be a number from 0 to 1" in message, message
    message = refusal(server, "generate_view", view_inputs(**{"Sampling temperature": -1}))
    assert "Sampling temperature must be a number from 0 to 100" in message


def test_a_raw_stop_is_answered_without_a_traceback(server):
    assert call(server, "stop", [])[0] == "complete"  # what the page sends (it cancels nothing here)
    for data in (["nan"], [None, "x"]):
        assert "/stop takes no inputs, got" in refusal(server, "stop", data)


def test_the_view_event_serves_its_defaults(server):
    kind, data = call(server, "generate_view", view_inputs())
    assert kind == "complete" and all(isinstance(t, str) and t for t in data[:len(COLUMNS)])


@pytest.mark.parametrize("api_name", [*sorted(GOOD), "generate_view"])
@pytest.mark.parametrize("prompt", [3, ["a"], {"a": 1}, None])
def test_a_prompt_that_is_not_text_is_refused(server, api_name, prompt):
    data = view_inputs() if api_name == "generate_view" else list(GOOD[api_name])
    data[0] = prompt
    assert "the prompt must be text" in refusal(server, api_name, data)


def test_an_unknown_endpoint_is_a_404_naming_it(server):
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for path in ("gradio_api/call/nope", "gradio_api/call/v2/nope"):
            answer = http.post(path, json={"data": [PROMPT]})
            assert answer.status_code == 404 and "no endpoint /nope" in answer.text, answer.text
        answer = http.post("gradio_api/queue/join", json={
            "data": [PROMPT], "fn_index": 9999, "session_hash": uuid.uuid4().hex})
        assert answer.status_code == 404 and "no endpoint" in answer.text, answer.text
    assert "Traceback" not in server.log.read_text()


def test_a_huge_temperature_is_one_problem_in_the_engines_bounds(server):
    message = refusal(server, "generate", [PROMPT, 8, 1e308, 40, 0.9, 0])
    assert message == ("Cannot generate: temperature must be a number from 0 to 100 "
                       "(0 = greedy), got 1e+308.")


def test_the_largest_top_k_the_engine_allows_is_served(server):
    kind, data = call(server, "top_k_top_p", [PROMPT, 8, 0.8, 2**31 - 1, 0.9, 1])
    assert kind == "complete"
    assert call(server, "top_k_top_p", [PROMPT, 8, 0.8, 0, 0.9, 1]) == (kind, data)  # k >= vocab = off
    assert "top_k must be a whole number from 0 to 2147483647" in refusal(
        server, "top_k_top_p", [PROMPT, 8, 0.8, 2**31, 0.9, 1])


def test_a_whole_float_is_an_integer_and_a_fraction_is_not(server):
    assert call(server, "sample", [PROMPT, 8.0, 0.8, 3.0]) == call(server, "sample", [PROMPT, 8, 0.8, 3])
    assert "seed must be a whole number >= 0, got 3.5" in refusal(server, "sample", [PROMPT, 8, 0.8, 3.5])


def test_the_apps_bounds_are_the_warpers_table():
    by_field = {w.field: w for w in WARPERS}
    for knob in (TEMPERATURE, TOP_K, TOP_P, *ADVANCED):
        w, b = by_field[knob.name], knob.bounds
        assert (b.whole, b.low, b.high, b.low_open) == (w.kind is int, w.low, w.high, w.low_open)
        assert w.low <= knob.minimum and knob.maximum <= w.high  # the slider lies inside
    assert SEED.check(2**70) == (2**70, None)  # SamplingParams takes any integer >= 0


def test_every_problem_is_told_once():
    from demo.handlers import check_request

    with pytest.raises(Exception) as err:
        check_request(["a"], [(TEMPERATURE, "hot"), (TOP_K, 2.5), (TOP_P, 0)])
    message = str(err.value)
    assert message.count("must be") == 4 and message.count("temperature") == 1, message
    assert "got 'hot' (str)" in message
