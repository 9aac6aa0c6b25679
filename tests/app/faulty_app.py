"""The demo with injected faults, for tests/app/test_serving.py and test_busy.py: a row seeded
666 fails when it takes its sixth token (an error inside one request, mid-stream), and with
SLOW_STEP_S set each batched forward takes that much longer (a slow model, so requests overlap
and run past a time cap for sure)."""

from __future__ import annotations

import os
import sys
import time

import app
from generation import handle
from generation.runners.decode_graph import DecodeRunner
from generation.runners.optimum import OptimumRunner

_apply = handle.RowBuilder.apply


def _failing_apply(self, update):
    if self.params.seed == 666 and len(self.result.token_ids) == 5:
        raise RuntimeError("injected engine fault")
    return _apply(self, update)


handle.RowBuilder.apply = _failing_apply
_delay = float(os.environ.get("SLOW_STEP_S", "0"))


def _slowed(step):
    def slow_step(self, cache, tokens):
        time.sleep(_delay)
        return step(self, cache, tokens)

    return slow_step


if _delay:
    DecodeRunner.step = _slowed(DecodeRunner.step)
    OptimumRunner.step = _slowed(OptimumRunner.step)

if __name__ == "__main__":
    sys.exit(app.main())
