"""Driving a decode graph from numpy, the way the contract says a runner must.

The cache is allocated once per layer as [max_rows, heads, capacity, head_dim]; a call on B
rows binds the contiguous slots `first..first+B-1` as both `past_*` and `present_*`, so
GroupQueryAttention writes the new keys/values in place. The gate and the tests use this; the
engine (generation/) has its own runner on the same contract.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnxruntime as ort


class DecodeRunner:
    """A decode-graph session plus its preallocated cache.

    Args:
        session: an InferenceSession on a decode graph.
        layers, heads, head_dim: the model's shape (decode.json).
        max_rows: cache slots.
        capacity: cache positions per slot.
    """

    def __init__(self, session: ort.InferenceSession, layers: int, heads: int, head_dim: int,
                 max_rows: int, capacity: int):
        self.session = session
        self.layers = layers
        shape = (max_rows, heads, capacity, head_dim)
        self.keys = [np.zeros(shape, np.float32) for _ in range(layers)]
        self.values = [np.zeros(shape, np.float32) for _ in range(layers)]
        self.lengths = np.zeros(max_rows, dtype=np.int64)  # tokens in each slot's cache

    def reset(self, slot: int) -> None:
        """Forget a slot's tokens (its cache is overwritten by the next prefill)."""
        self.lengths[slot] = 0

    def run(self, tokens: Sequence[Sequence[int]], first: int = 0, logits_to_keep: int = 1) -> np.ndarray:
        """Feed each row its next tokens (all rows the same count) after what its slot holds.

        Args:
            tokens: [B][seq] new token ids for slots first..first+B-1.
            first: the first slot.
            logits_to_keep: how many last positions get logits.

        Returns:
            logits [B, logits_to_keep, vocab] (float32).
        """
        ids = np.asarray(tokens, dtype=np.int64)
        batch, seq = ids.shape
        slots = slice(first, first + batch)
        before = self.lengths[slots]
        positions = before[:, None] + np.arange(seq, dtype=np.int64)[None, :]
        binding = self.session.io_binding()
        feeds = {
            "input_ids": ids,
            "position_ids": positions,
            "seqlens_k": (before + seq - 1).astype(np.int32),
            "total_sequence_length": np.asarray((before + seq).max(), dtype=np.int32),
            "logits_to_keep": np.asarray(logits_to_keep, dtype=np.int64),
        }
        for name, value in feeds.items():
            binding.bind_cpu_input(name, value)
        binding.bind_output("logits")  # first, so it is get_outputs()[0]
        for i in range(self.layers):
            for kind, cache in (("key", self.keys[i]), ("value", self.values[i])):
                view = cache[slots]  # contiguous: slots are the leading axis
                args = ("cpu", 0, np.float32, list(view.shape), view.ctypes.data)
                binding.bind_input(f"past_{kind}.{i}", *args)
                binding.bind_output(f"present_{kind}.{i}", *args)
        self.session.run_with_iobinding(binding)
        self.lengths[slots] += seq
        return binding.get_outputs()[0].numpy()
