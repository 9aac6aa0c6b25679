"""Batched serving through a real server: many users share the decoding loop and each gets
its solo result; cancelled requests free their rows; a full queue answers "busy" at once; an
engine error stays in its request; memory does not creep."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from bench._server import start_app, stop_app
from generation import Engine
from tests.app.conftest import DEMO_MODEL, start_faulty
from tests.app.test_api import reference
from tests.generation.conftest import decode_dir  # noqa: F401 - a fixture used below
from tests.helpers import wait_for

PROMPTS = ["We study the problem of", "Graph neural networks are", "In this paper we show",
           "Deep learning methods for"]


@pytest.fixture(scope="module")
def model(request) -> Path:
    """The bundled demo model once it has a decode graph, else the tiny model's decode graphs."""
    if (DEMO_MODEL / "decode.json").is_file():
        return DEMO_MODEL
    return request.getfixturevalue("decode_dir")


@pytest.fixture(scope="module")
def solo(model) -> Engine:
    return Engine.load(model)


@pytest.fixture(scope="module")
def server(model, tmp_path_factory):
    proc, url = start_app(model, tmp_path_factory.mktemp("serving") / "server.log")
    yield url
    stop_app(proc)


def stats(url: str) -> dict:
    return Client(url, verbose=False).predict(api_name="/serving_stats")


@pytest.mark.slow
def test_32_users_each_get_their_solo_result(server, solo):
    n = 24
    expected = {(p, s): reference(solo, 0.9, 20, 0.95, s, prompt=p, n=n) for p in PROMPTS for s in (0, 1)}
    assert stats(server)["serving"] == "batched"

    def user(index: int) -> list[bool]:
        client = Client(server, verbose=False)
        prompt = PROMPTS[index % len(PROMPTS)]
        return [tuple(client.predict(prompt, n, 0.9, 20, 0.95, seed, api_name="/generate"))
                == expected[(prompt, seed)] for seed in (0, 1)]

    with ThreadPoolExecutor(32) as pool:
        results = [ok for oks in pool.map(user, range(32)) for ok in oks]
    assert len(results) == 64 and all(results)
    assert stats(server)["rows_peak"] > 3  # requests really shared the loop


@pytest.mark.slow
def test_a_cancelled_request_frees_its_rows(model, solo, tmp_path):
    # Each step slowed to 20 ms: left alone the request would run for seconds.
    proc, url = start_faulty(model, tmp_path / "server.log", SLOW_STEP_S="0.02")
    try:
        client = Client(url, verbose=False)
        job = client.submit(PROMPTS[0], min(500, solo.context_size - 40), 0.8, 40, 0.9, 0, api_name="/generate")
        wait_for(lambda: stats(url)["rows"] > 0, poll_s=0.05)  # some rows may end early (EOS)
        cancelled = time.monotonic()
        job.cancel()
        wait_for(lambda: stats(url)["rows"] == 0, timeout=5, poll_s=0.05)
        assert time.monotonic() - cancelled < 2.0
        assert tuple(client.predict(PROMPTS[1], 8, 0.8, 40, 0.9, 3, api_name="/generate")) == \
            reference(solo, 0.8, 40, 0.9, 3, prompt=PROMPTS[1], n=8)
    finally:
        stop_app(proc)


@pytest.mark.slow
def test_a_full_queue_answers_busy_at_once(model, solo, tmp_path):
    proc, url = start_faulty(model, tmp_path / "server.log", MAX_ROWS="3", QUEUE_SIZE="1", SLOW_STEP_S="0.03")
    try:
        holder = Client(url, verbose=False).submit(PROMPTS[0], min(500, solo.context_size - 40), 0.8, 40, 0.9, 0,
                                                   api_name="/generate")
        # While the holder keeps any row (its rows may end early), a 3-row request cannot start.
        wait_for(lambda: stats(url)["rows"] > 0, poll_s=0.05)

        def ask(i: int) -> tuple[str, float]:
            start = time.perf_counter()
            try:
                Client(url, verbose=False).predict(PROMPTS[i % 4], 4, 0.8, 40, 0.9, i, api_name="/generate")
                return "served", time.perf_counter() - start
            except AppError as err:
                assert "busy" in str(err).lower(), err
                return "busy", time.perf_counter() - start

        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(ask, i) for i in range(4)]
            wait_for(lambda: sum(f.done() for f in futures) >= 3, poll_s=0.05)  # one waits behind the holder
            holder.cancel()
            outcomes = [f.result() for f in futures]
        busy = [t for what, t in outcomes if what == "busy"]
        assert len(busy) == 3 and max(busy) < 5, outcomes
        assert Client(url, verbose=False).predict(PROMPTS[1], 4, api_name="/greedy")
    finally:
        stop_app(proc)


@pytest.mark.slow
def test_an_engine_error_reaches_only_its_request(model, solo, tmp_path):
    proc, url = start_faulty(model, tmp_path / "server.log")

    def ask(seed: int):
        try:
            return Client(url, verbose=False).predict(PROMPTS[seed % 4], 16, 0.8, 40, 0.9, seed,
                                                      api_name="/generate")
        except AppError as err:
            return err

    try:
        with ThreadPoolExecutor(4) as pool:
            outs = dict(zip((1, 666, 2, 3), pool.map(ask, (1, 666, 2, 3)), strict=True))
        assert isinstance(outs[666], AppError) and "injected engine fault" in str(outs[666])
        for seed in (1, 2, 3):
            assert tuple(outs[seed]) == reference(solo, 0.8, 40, 0.9, seed, prompt=PROMPTS[seed % 4], n=16)
    finally:
        stop_app(proc)


# The most RSS slope allowed (least squares over the measured requests), MiB per 100 requests.
# This test on the 2-core box: 2.5 and 2.8 with Gradio 6.17's per-event records unbounded,
# 0.44 to 0.49 with demo/guard.py's bounds (one allocator step of ~0.8 MiB in the window);
# over 4,500 requests the bounded server grows 0.13 MiB per 100, slowing (README, app section).
CREEP_MIB_PER_100 = 1.0


@pytest.mark.slow
def test_memory_does_not_creep(server):
    """Once warm (the loop's batch sizes seen, the allocators grown), requests cost no memory
    that stays: the RSS measured every 50 requests over 300 more grows by less than
    CREEP_MIB_PER_100 per 100 requests."""
    users = [Client(server, verbose=False) for _ in range(10)]  # new clients are new sessions
    watcher = Client(server, verbose=False)

    def burst(per_user: int) -> None:
        def user(index: int) -> None:
            for r in range(per_user):
                users[index].predict(PROMPTS[(index + r) % 4], 8, 0.8, 40, 0.9, r, api_name="/generate")

        with ThreadPoolExecutor(len(users)) as pool:
            list(pool.map(user, range(len(users))))

    def rss_mib() -> float:
        return watcher.predict(api_name="/serving_stats")["rss_mib"]

    burst(30)  # warm-up: 300 requests
    points = [rss_mib()]
    for _ in range(6):
        burst(5)
        points.append(rss_mib())
    rss = np.array(points)
    slope = 100 * np.polyfit(np.arange(len(rss)) * 50, rss, 1)[0]
    print(f"RSS every 50 requests (MiB): {rss.round(1).tolist()}; {slope:.2f} MiB per 100 requests")
    assert slope < CREEP_MIB_PER_100, (slope, rss.round(1).tolist())
