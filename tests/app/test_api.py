"""The gradio_client API of a real server, checked against the engine run in this process."""

from __future__ import annotations

import pytest
from gradio_client.exceptions import AppError

from generation import SamplingParams

PROMPT = "In this paper, we propose a new method for"
N = 24


def reference(engine, temperature=0.8, top_k=40, top_p=0.9, seed=7, prompt=PROMPT, n=N):
    """The three columns as the API promises them, computed with the engine directly."""
    rows = engine.generate(prompt, [
        SamplingParams(temperature=0.0, seed=seed),
        SamplingParams(temperature=temperature, seed=seed),
        SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed),
    ], n)
    return tuple(r.text for r in rows)


def test_generate_predict_returns_the_three_columns(client, engine):
    out = client.predict(PROMPT, N, 0.8, 40, 0.9, 7, api_name="/generate")
    assert len(out) == 3 and all(isinstance(t, str) and t for t in out)
    assert tuple(out) == reference(engine)


def test_generate_streams_growing_texts(client, engine):
    # Updates are merged over >= 30 ms (app.STREAM_INTERVAL_S): 160 tokens take long enough
    # for several of them even on a fast idle machine.
    job = client.submit(PROMPT, 160, 1.0, 0, 1.0, 3, api_name="/generate")
    updates = [tuple(u) for u in job]
    assert len(updates) >= 3, updates
    for before, after in zip(updates, updates[1:], strict=False):
        assert all(a.startswith(b) for b, a in zip(before, after, strict=True))
    assert updates[-1] == tuple(job.outputs()[-1]) == reference(engine, 1.0, 0, 1.0, 3, n=160)


def test_greedy_is_the_same_every_call_and_seed_reproduces_sampling(client):
    first = client.predict(PROMPT, N, 1.0, 0, 1.0, 11, api_name="/generate")
    again = client.predict(PROMPT, N, 1.0, 0, 1.0, 11, api_name="/generate")
    other = client.predict(PROMPT, N, 1.0, 0, 1.0, 12, api_name="/generate")
    assert tuple(first) == tuple(again)
    assert other[0] == first[0]  # greedy ignores the seed
    assert other[1:] != first[1:]  # a different seed draws different tokens


def test_each_strategy_endpoint(client, engine):
    def one(params):
        return engine.generate(PROMPT, [params], N)[0].text

    assert client.predict(PROMPT, N, api_name="/greedy") == one(SamplingParams())
    assert client.predict(PROMPT, N, 0.9, 5, api_name="/sample") == one(
        SamplingParams(temperature=0.9, seed=5))
    assert client.predict(PROMPT, N, 0.9, 20, 0.8, 5, api_name="/top_k_top_p") == one(
        SamplingParams(temperature=0.9, top_k=20, top_p=0.8, seed=5))


def test_top_k_and_top_p_reach_the_engine(client):
    """The third column's knobs are not ignored: top_k=1 makes it greedy."""
    greedy, _, top1 = client.predict(PROMPT, N, 1.5, 1, 1.0, 2, api_name="/generate")
    assert top1 == greedy
    _, sampled, tiny_p = client.predict(PROMPT, N, 1.5, 0, 1e-6, 2, api_name="/generate")
    assert tiny_p == greedy != sampled


BAD = [
    (("", N, 0.8, 40, 0.9, 0), "prompt is empty"),
    (("   ", N, 0.8, 40, 0.9, 0), "prompt is empty"),
    (("x " * 5000, N, 0.8, 40, 0.9, 0), "characters; the limit"),
    ((PROMPT, 0, 0.8, 40, 0.9, 0), "max_new_tokens"),
    ((PROMPT, 513, 0.8, 40, 0.9, 0), "max_new_tokens"),
    ((PROMPT, 2.5, 0.8, 40, 0.9, 0), "max_new_tokens"),
    ((PROMPT, N, -0.1, 40, 0.9, 0), "temperature"),
    # JSON has no NaN, so a client sends "nan" (or any text) where a number belongs.
    ((PROMPT, N, "nan", 40, 0.9, 0), "temperature"),
    ((PROMPT, N, "hot", 40, 0.9, 0), "temperature"),
    ((PROMPT, N, 0.8, 40, 0.0, 0), "top_p"),
    ((PROMPT, N, 0.8, 40, 1.5, 0), "top_p"),
    ((PROMPT, N, 0.8, -1, 0.9, 0), "top_k"),
    ((PROMPT, N, 0.8, 40, 0.9, 1.5), "seed"),
]


@pytest.mark.parametrize(("args", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_input_is_a_clear_error_and_the_server_keeps_serving(client, args, message):
    with pytest.raises(AppError, match=message):
        client.predict(*args, api_name="/generate")
    assert client.predict(PROMPT, 4, api_name="/greedy")


def test_every_problem_is_named_at_once(client):
    with pytest.raises(AppError) as err:
        client.predict("", 0, -1.0, -1, 2.0, 0.5, api_name="/generate")
    for name in ("prompt", "max_new_tokens", "temperature", "top_k", "top_p", "seed"):
        assert name in str(err.value)
