"""Beyond the bounded queue, a request is refused with a clear "queue is full" message."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from gradio_client import Client
from gradio_client.utils import QueueError

from tests.app.conftest import start_server, stop_server


@pytest.mark.slow
def test_a_full_queue_turns_requests_away_and_recovers(app_model_dir, tmp_path):
    proc, url = start_server(app_model_dir, tmp_path / "server.log",
                             CONCURRENCY="1", QUEUE_SIZE="1")
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
        assert Client(url, verbose=False).predict("We study", 4, api_name="/greedy")
    finally:
        stop_server(proc)
