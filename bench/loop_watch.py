"""The demo with a watchdog on Gradio's event loop: how long a callback waits to run, and what
the loop's thread runs meanwhile.

    python bench/loop_watch.py LOG [app.py's options]
    NEO_STORM_WATCH=LOG python -m pytest tests/app/test_storm.py -s    # under the storm

app.py's main() runs in this process. A thread schedules a no-op on the event loop every 50 ms
and times its wait; past 100 ms it samples the loop thread's stack (sys._current_frames) every
20 ms. LOG gets a JSON line per second (`pings`, the longest and median `wait_s`, the callbacks
`ready` at most, the threads) and one per wait over 200 ms (`stall_s`, the callbacks ready when
it was scheduled, the four stacks sampled most, innermost frame last). `at` is time.time().
"""

from __future__ import annotations

import asyncio
import asyncio.base_events
import collections
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PING_S, SAMPLE_AFTER_S, SAMPLE_S, STALL_S = 0.05, 0.1, 0.02, 0.2


def capture_server_loop(found: dict) -> None:
    """Record (in `found`) the first event loop run outside the main thread: uvicorn's, where
    Gradio serves every request and event."""
    run_forever = asyncio.base_events.BaseEventLoop.run_forever

    def recording(loop):
        if "loop" not in found and threading.current_thread() is not threading.main_thread():
            found["loop"], found["thread"] = loop, threading.get_ident()
        return run_forever(loop)

    asyncio.base_events.BaseEventLoop.run_forever = recording


def stack(frame, depth: int = 10) -> list[str]:
    return [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in traceback.extract_stack(frame)[-depth:]]


def wait_for_ping(loop, thread: int) -> tuple[float, int, collections.Counter]:
    """(seconds a no-op waited on `loop`, callbacks ready when it was scheduled, the loop
    thread's stacks sampled while it waited)."""
    done, samples = threading.Event(), collections.Counter()
    ready, start = len(loop._ready), time.monotonic()
    loop.call_soon_threadsafe(done.set)
    while not done.wait(SAMPLE_S):
        frame = sys._current_frames().get(thread)
        if frame is not None and time.monotonic() - start > SAMPLE_AFTER_S:
            samples[tuple(stack(frame))] += 1
    return time.monotonic() - start, ready, samples


def watch(found: dict, log) -> None:
    while "loop" not in found:
        time.sleep(0.1)
    loop, thread = found["loop"], found["thread"]
    waits, ready_max, second = [], 0, time.monotonic()
    while True:
        time.sleep(PING_S)
        wait, ready, samples = wait_for_ping(loop, thread)
        waits.append(wait)
        ready_max = max(ready_max, ready)
        if wait > STALL_S:
            log.write(json.dumps({"at": time.time(), "stall_s": round(wait, 3), "ready": ready,
                                  "stacks": [[n, list(s)] for s, n in samples.most_common(4)]}) + "\n")
        if time.monotonic() - second >= 1:
            waits.sort()
            log.write(json.dumps({"at": time.time(), "pings": len(waits), "wait_s_max": round(waits[-1], 3),
                                  "wait_s_p50": round(waits[len(waits) // 2], 4), "ready": ready_max,
                                  "threads": threading.active_count()}) + "\n")
            waits, ready_max, second = [], 0, time.monotonic()


def main() -> int:
    log = open(sys.argv[1], "w", buffering=1)  # noqa: SIM115 - written until the process ends
    found: dict = {}
    capture_server_loop(found)
    threading.Thread(target=watch, args=(found, log), name="loop-watch", daemon=True).start()
    sys.argv = [str(ROOT / "app.py"), *sys.argv[2:]]
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    import app

    return app.main()


if __name__ == "__main__":
    sys.exit(main())
