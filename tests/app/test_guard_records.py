"""What demo/guard.py keeps of Gradio's per-event records: what is still wanted, and a bounded
number of the rest, however many events were served (the server-level check is
tests/app/test_serving.py::test_memory_does_not_creep)."""

from __future__ import annotations

from types import SimpleNamespace

from demo.guard import LiveTasks, PendingEvents, SessionStreams


class FakeTask:
    def __init__(self, done: bool):
        self._done = done

    def done(self) -> bool:
        return self._done


def test_finished_tasks_are_dropped_and_running_ones_kept():
    tasks = LiveTasks(floor=8)
    running = [FakeTask(False) for _ in range(3)]
    for task in running:
        tasks.append(task)
    for _ in range(1000):
        tasks.append(FakeTask(True))
    assert len(tasks) <= 16
    assert all(task in tasks for task in running)


def test_events_no_session_waits_for_are_dropped():
    pending = {"waiting": set()}
    events = PendingEvents(pending, floor=8)
    for i in range(5):  # events of a session still waiting for their results
        pending["waiting"].add(f"w{i}")
        events[f"w{i}"] = SimpleNamespace(session_hash="waiting")
    for i in range(1000):  # served: their ids left the pending set once the client was answered
        events[f"d{i}"] = SimpleNamespace(session_hash="done")
    assert len(events) <= 16
    assert all(f"w{i}" in events for i in range(5))


def test_empty_stream_entries_are_dropped_and_media_streams_kept():
    streams = SessionStreams(floor=8)
    streams[1] = {7: "a media stream"}
    for run in range(2, 1000):
        streams[run] = {}
    assert len(streams) <= 16
    assert streams[1] == {7: "a media stream"}
    assert 999 in streams  # the run being set is never dropped
