"""The scheduler's view of a runner: numbered cache slots, allocated once.

Slots 0..B-1 hold the rows that decode this step; a slot above them holds a prompt while it is
prefilled. The decode graph's runner (`decoder.DecodeRunner`) steps slots of different lengths
in one forward and appends prompt chunks to a slot, so requests share every step. An optimum
graph's runner (`runner.Runner`) steps only slots of one length: its requests are served one
at a time, each prompt in one piece.
"""

from __future__ import annotations

import os

import numpy as np

from .decoder import DecodeRunner


def row_bytes(runner, layers: int, hidden: int, capacity: int) -> int:
    """Bytes of one slot of the cache at `capacity` tokens (local layers may hold fewer)."""
    if isinstance(runner, DecodeRunner):
        return sum(a.nbytes for a in runner.new_cache(1, capacity).arrays)
    return 2 * layers * hidden * capacity * 4


def rows_that_fit(runner, hidden: int, capacity: int, max_rows: int, cache_mb: float | None) -> int:
    """max_rows, lowered to the rows whose caches fit in cache_mb (None: a quarter of RAM)."""
    per_row = row_bytes(runner, runner.layers, hidden, capacity)
    budget = cache_mb * 2**20 if cache_mb is not None else memory_bytes() / 4
    return max(1, min(max_rows, int(budget // per_row)))


def memory_bytes() -> float:
    """The machine's physical memory (16 GiB where the OS does not say)."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 16.0 * 2**30


class Slots:
    """A runner and its cache of `rows` slots of `capacity` tokens.

    Attributes:
        ragged: True when slots of different lengths (different requests) may share a step.
        chunk_ok: True when a prompt may be fed to its slot in several pieces.
    """

    def __init__(self, runner, rows: int, capacity: int):
        self.runner = runner
        self.ragged = self.chunk_ok = isinstance(runner, DecodeRunner)
        self.cache = runner.new_cache(rows, capacity)
        for array in getattr(self.cache, "arrays", ()):
            # Touch every page now: the cache is allocated once and a server must hold all of it
            # anyway; left to first use, each new slot's page faults (zero-filled huge pages)
            # cost tens of ms in the middle of a step, and RSS would creep up as slots are used.
            array.fill(0)

    def prefill(self, slot: int, ids: list[int]) -> np.ndarray:
        """Append `ids` to `slot`; returns the logits [vocab] after the last one."""
        return self.runner.prefill(self.cache, slot, ids)[-1]

    def copy(self, src: int, dst: int) -> None:
        """Give `dst` the tokens of `src`."""
        self.cache.copy(src, dst)

    def move(self, src: int, dst: int) -> None:
        """Move the tokens of `src` to `dst`; `src` becomes free."""
        self.cache.move(src, dst)

    def free(self, slot: int) -> None:
        """Forget the tokens of `slot`."""
        self.cache.clear(slot)

    def step(self, tokens: np.ndarray) -> np.ndarray:
        """One token for each of slots 0..len(tokens)-1; returns logits [rows, vocab] (a view
        the next step overwrites)."""
        return self.runner.step(self.cache, tokens)
