"""The demo with injected faults, for tests/app/test_serving.py: a row seeded 666 fails when it
takes its sixth token (an error inside one request, mid-stream), and with SLOW_STEP_S set each
batched forward takes that much longer (a slow model, so requests overlap for sure)."""

from __future__ import annotations

import os
import sys
import time

import app
from generation import rows
from generation.runners.decode_graph import DecodeRunner

_accept = rows.RowState.accept


def _failing_accept(self, token, *args):
    if self.params.seed == 666 and len(self.result.token_ids) == 5:
        raise RuntimeError("injected engine fault")
    return _accept(self, token, *args)


rows.RowState.accept = _failing_accept
_step = DecodeRunner.step
_delay = float(os.environ.get("SLOW_STEP_S", "0"))


def _slow_step(self, cache, tokens):
    time.sleep(_delay)
    return _step(self, cache, tokens)


if _delay:
    DecodeRunner.step = _slow_step

if __name__ == "__main__":
    sys.exit(app.main())
