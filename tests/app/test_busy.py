"""The serving limits of the per-request mode (SERVING=per-request; the batched mode's are in
test_serving.py): beyond Gradio's bounded queue a request is refused with a clear "queue is
full" message, and a request stops at the per-request time cap (each step slowed, so that a
whole text always takes longer than the cap)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from gradio_client import Client
from gradio_client.utils import QueueError

from generation import SamplingParams
from tests.app.conftest import start_faulty, stop_server

SLOW_STEP_S, TIME_LIMIT_S = 0.02, 0.3


@pytest.mark.slow
def test_a_full_queue_turns_requests_away_and_recovers(app_model_dir, engine, tmp_path):
    proc, url = start_faulty(app_model_dir, tmp_path / "server.log",
                             SERVING="per-request", CONCURRENCY="1", QUEUE_SIZE="1",
                             REQUEST_TIME_LIMIT_S=str(TIME_LIMIT_S), SLOW_STEP_S=str(SLOW_STEP_S))
    try:
        def ask(_: int) -> str:
            client = Client(url, verbose=False)
            try:
                client.predict("We study the problem of", 200, 1.0, 0, 1.0, 0, api_name="/generate")
                return "served"
            except QueueError as err:
                assert "full" in str(err).lower()
                return "busy"

        with ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(ask, range(8)))
        assert "busy" in outcomes and "served" in outcomes, outcomes
        # Once the queue drains, requests are served again.
        client = Client(url, verbose=False)
        assert client.predict("We study", 4, api_name="/greedy")
        # The time cap: a long request returns what it had at 0.3 s, a prefix of the full text.
        n = min(500, engine.context_size - 1)
        cut = client.predict("We study", n, api_name="/greedy")
        full = engine.generate("We study", [SamplingParams()], n)[0]
        assert full.text.startswith(cut)
        # At >= 20 ms a step the server's whole text takes well past the cap: it must be cut.
        assert len(full.token_ids) * SLOW_STEP_S > 3 * TIME_LIMIT_S
        assert len(cut) < len(full.text)
    finally:
        stop_server(proc)
