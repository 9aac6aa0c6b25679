"""Small helpers shared by tests of several packages."""

from __future__ import annotations

import time


def wait_for(condition, timeout: float = 10.0, poll_s: float = 0.002) -> None:
    """Return once `condition()` is true; fail the test after `timeout` seconds.

    Args:
        condition: called every `poll_s` seconds (an HTTP call wants a longer `poll_s`).
        timeout: seconds to wait at most.
        poll_s: seconds between calls.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(poll_s)
