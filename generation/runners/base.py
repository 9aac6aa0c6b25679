"""What a runner is: the model call, with the capabilities a scheduler plans around.

A runner knows tensors, never requests: it owns an ONNX Runtime session and makes caches of
numbered slots; a scheduler decides which sequence sits in which slot. Two graphs run here:
`decode_graph.DecodeRunner` (the export's decode graph: ragged batches, chunked prompts) and
`optimum.OptimumRunner` (optimum's `model.onnx`: one sequence length per step).
"""

from __future__ import annotations

import os
from typing import Protocol

import numpy as np


class Cache(Protocol):
    """A runner's keys and values for `rows` numbered slots of up to `capacity` tokens."""

    rows: int
    capacity: int
    lengths: np.ndarray  # int64 [rows]: tokens held by each slot

    def copy(self, src: int, dst: int) -> None:
        """Give slot `dst` the tokens of slot `src`."""

    def move(self, src: int, dst: int) -> None:
        """Move slot `src` into `dst`; `src` becomes free."""

    def clear(self, slot: int) -> None:
        """Forget the tokens of `slot`."""


class Runner(Protocol):
    """The model call.

    Attributes:
        provider: the execution provider that runs it ("cpu" or "cuda").
        layers: transformer layers of the graph.
        ragged: slots of different lengths (different requests) may share one `step`.
        chunked_prefill: a prompt may be appended to its slot in several pieces.
        prefill_graph: prompts run through a graph of their own, with kernels for many-token
            chunks (the scheduler cuts prompts into `scheduler.PREFILL_GRAPH_CHUNK` pieces).
    """

    provider: str
    ragged: bool
    chunked_prefill: bool
    prefill_graph: bool

    @property
    def layers(self) -> int: ...

    def slot_bytes(self, capacity: int) -> int:
        """Bytes of one slot's cache at `capacity` tokens."""

    def new_cache(self, rows: int, capacity: int) -> Cache:
        """A cache of `rows` empty slots."""

    def prefill(self, cache: Cache, slot: int, token_ids, keep: int = 1) -> np.ndarray:
        """Append tokens to one slot; float32 logits [keep, vocab] of its last `keep` positions."""

    def step(self, cache: Cache, tokens: np.ndarray) -> np.ndarray:
        """One token for each of slots 0..len(tokens)-1; float32 logits [len(tokens), vocab]."""


def rows_that_fit(runner: Runner, capacity: int, max_rows: int, cache_mb: float | None) -> int:
    """max_rows, lowered to the rows whose caches fit in cache_mb (None: a quarter of RAM)."""
    budget = cache_mb * 2**20 if cache_mb is not None else memory_bytes() / 4
    return max(1, min(max_rows, int(budget // runner.slot_bytes(capacity))))


def memory_bytes() -> float:
    """The machine's physical memory (16 GiB where the OS does not say)."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 16.0 * 2**30
