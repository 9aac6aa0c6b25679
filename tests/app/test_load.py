"""16 concurrent gradio_client users x 3 requests each: all complete, all correct."""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from gradio_client import Client

from tests.app.test_api import reference

USERS, REQUESTS, N = 16, 3, 16
PROMPTS = ["We study the problem of", "Graph neural networks are", "In this paper we show",
           "Deep learning methods for"]


@pytest.mark.slow
def test_sixteen_concurrent_users(server, engine):
    expected = {(p, seed): reference(engine, 0.9, 20, 0.95, seed, prompt=p, n=N)
                for p in PROMPTS for seed in range(REQUESTS)}

    def user(index: int) -> list[tuple[float, bool]]:
        client = Client(server.url, verbose=False)
        results = []
        for seed in range(REQUESTS):
            prompt = PROMPTS[index % len(PROMPTS)]
            start = time.perf_counter()
            out = client.predict(prompt, N, 0.9, 20, 0.95, seed, api_name="/generate")
            results.append((time.perf_counter() - start, tuple(out) == expected[(prompt, seed)]))
        return results

    start = time.perf_counter()
    with ThreadPoolExecutor(USERS) as pool:
        runs = [r for rs in pool.map(user, range(USERS)) for r in rs]
    wall = time.perf_counter() - start
    latencies = sorted(t for t, _ in runs)
    print(f"\nload: {USERS} users x {REQUESTS} requests ({N} new tokens x 3 columns) in {wall:.1f} s; "
          f"latency p50 {statistics.median(latencies):.2f} s, "
          f"p95 {latencies[int(0.95 * (len(latencies) - 1))]:.2f} s, max {latencies[-1]:.2f} s")
    assert len(runs) == USERS * REQUESTS
    assert all(ok for _, ok in runs)


def test_the_serve_benchmarks_http_user_gets_the_api_answer(server, engine):
    # bench/serve.py --client http: a plain HTTP user of /generate reads the same texts.
    import httpx

    from bench.serve import http_request

    with httpx.Client(timeout=60) as http:
        ttft, total, texts = http_request(http, server.url, PROMPTS[0], N, 3)
    assert 0 < ttft <= total
    assert texts == reference(engine, 0.8, 40, 0.9, 3, prompt=PROMPTS[0], n=N)
