"""The start-up probe: does a lone row need padding on this CPU?

The quantized decode graphs edge-pad every weight matmul to `min_rows` rows (an input with
default 2) because MatMulNBits can take a single-row path that rounds differently from the
multi-row one, depending on the CPU's instructions and the block size. Where a lone row already
gets bitwise the logits it gets beside other rows, the padding buys nothing and costs a second
row of work at batch 1; the probe measures that on the machine the engine runs on.
"""

from __future__ import annotations

import os

import numpy as np

from .decode_graph import DecodeRunner

# GENERATION_PAD_PROBE=0 skips the probe: the graph keeps padding.
PROBE_ENV = "GENERATION_PAD_PROBE"


def probe_single_row(runner: DecodeRunner, steps: int = 4) -> bool | None:
    """Run a few steps of one row alone and beside one and two other rows, unpadded; keep the
    padding off (min_rows 1) only if every alone step's logits equal the batched ones bitwise.

    Args:
        runner: the engine's runner (its session and thread count, as the engine runs them).
        steps: decode steps compared.

    Returns:
        True (padding turned off), False (it stays on), None (the graph does not pad, or the
        probe is switched off by GENERATION_PAD_PROBE=0).
    """
    if runner.min_rows is None or os.environ.get(PROBE_ENV, "1") == "0":
        return None
    runner.min_rows[0] = 1
    vocab = runner.io.vocab_size
    ids = [(np.arange(n) * 7919 + 13 * n) % vocab for n in (12, 5, 9)]
    caches = [runner.new_cache(rows, 12 + steps + 1) for rows in (1, 2, 3)]
    for cache in caches:
        for slot in range(cache.rows):
            runner.prefill(cache, slot, ids[slot])
    same = True
    for i in range(steps):
        tokens = np.array([(i * 131 + 17 * r) % vocab for r in range(3)], dtype=np.int64)
        alone = runner.step(caches[0], tokens[:1]).copy()
        for cache in caches[1:]:
            same &= bool(np.array_equal(alone[0], runner.step(cache, tokens[:cache.rows])[0]))
    runner.min_rows[0] = 1 if same else 2
    return same
