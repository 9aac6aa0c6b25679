"""Where the scheduler's rows live: numbered cache slots, whatever runner holds them.

The scheduler speaks in slots: slots 0..B-1 hold the rows that decode this step, and a slot
above them holds a prompt while it is prefilled. A backend turns slot operations into runner
calls:

- `SerialSlots` runs a plain optimum export (a growing `KVCache` per request, every row of one
  batch at the same length): one request at a time, its prompt prefilled in one piece.
"""

from __future__ import annotations

import numpy as np

from .runner import KVCache, Runner


def row_bytes(layers: int, hidden: int, capacity: int, itemsize: int = 4) -> int:
    """Bytes of one row's cache (keys and values of every layer) at `capacity` positions."""
    return 2 * layers * hidden * capacity * itemsize


class SerialSlots:
    """Slots over a plain export's runner: one request's rows at a time.

    The request's cache is one `KVCache` whose batch rows are the decoding slots; slot moves
    and copies are recorded and applied as one `KVCache.take` before the next step.
    """

    ragged = False  # rows of different requests (lengths) cannot share a forward
    chunk = None  # the runner cannot append to a prefilled cache: whole prompts only

    def __init__(self, runner: Runner, max_rows: int):
        self.runner = runner
        self.max_rows = max_rows
        self._cache: KVCache | None = None
        self._row_of: dict[int, int] = {}  # slot → batch row of the cache

    def prefill(self, slot: int, ids: list[int]) -> np.ndarray:
        """Run a whole prompt into `slot` (no other slot may be in use); returns logits [vocab]."""
        if self._row_of:
            raise RuntimeError("SerialSlots serves one request at a time")
        logits, self._cache = self.runner.prefill(ids)
        self._row_of = {slot: 0}
        return logits[0]

    def copy(self, src: int, dst: int) -> None:
        """Give `dst` the cache of `src`."""
        self._row_of[dst] = self._row_of[src]

    def move(self, src: int, dst: int) -> None:
        """Move the cache of `src` to `dst`; `src` becomes free."""
        self._row_of[dst] = self._row_of.pop(src)

    def free(self, slot: int) -> None:
        """Forget `slot`; the cache goes when no slot is left."""
        self._row_of.pop(slot, None)
        if not self._row_of:
            self._cache = None

    def step(self, tokens: np.ndarray) -> np.ndarray:
        """One token for each of slots 0..len(tokens)-1; returns logits [rows, vocab]."""
        rows = [self._row_of[s] for s in range(len(tokens))]
        if rows != list(range(self._cache.rows)):
            self._cache.take(np.asarray(rows, dtype=np.int64))
            self._row_of = {s: s for s in range(len(rows))}
        return self.runner.step(tokens, self._cache)
