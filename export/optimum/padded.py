"""A left-padded batch on optimum's graph, with an attention mask: the one thing the gate asks
of `model.onnx` that the engine's `OptimumRunner` cannot express (it serves one sequence at a
time, every position real, and binds an all-ones mask). `ORTModelForCausalLM.generate` feeds
such batches, so the gate checks them here, with plain `session.run` calls.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnxruntime as ort

from export.gate.reference import position_ids_from_mask
from generation.contract import LOGITS, OPTIMUM_PAST, OPTIMUM_PRESENT


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Left-pad token rows to one length.

    Returns:
        (input_ids [batch, longest] int64, attention_mask [batch, longest] int64).
    """
    longest = max(len(r) for r in rows)
    ids = np.full((len(rows), longest), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), longest), dtype=np.int64)
    for i, row in enumerate(rows):
        if row:
            ids[i, longest - len(row):] = row
            mask[i, longest - len(row):] = 1
    return ids, mask


class PaddedBatch:
    """Token rows left-padded into one batch: a prefill, then one token per row per `step`.

    `ids` and `mask` grow with every step (what the PyTorch reference is fed).
    """

    def __init__(self, session: ort.InferenceSession, rows: Sequence[Sequence[int]], pad_id: int):
        self.session = session
        self.ids, self.mask = left_pad(rows, pad_id)
        self._past: dict[str, np.ndarray] = {}
        self._past_of: dict[tuple[str, str], str] = {}  # (layer, kind) -> cache input name
        for inp in session.get_inputs():
            if m := OPTIMUM_PAST.match(inp.name):  # heads and head size are fixed in the graph
                _, heads, _, head_dim = inp.shape
                self._past[inp.name] = np.zeros((len(rows), heads, 0, head_dim), np.float32)
                self._past_of[m[1], m[2]] = inp.name

    def prefill(self) -> np.ndarray:
        """logits [batch, longest, vocab] of the padded prompts."""
        return self._run(self.ids)

    def step(self, tokens: np.ndarray) -> np.ndarray:
        """One token per row; logits [batch, vocab]."""
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1, 1)
        self.ids = np.concatenate([self.ids, tokens], axis=1)
        self.mask = np.concatenate([self.mask, np.ones_like(tokens)], axis=1)
        return self._run(tokens)[:, -1]

    def _run(self, new_ids: np.ndarray) -> np.ndarray:
        feed = dict(self._past, input_ids=new_ids, attention_mask=self.mask)
        if "position_ids" in {i.name for i in self.session.get_inputs()}:
            feed["position_ids"] = position_ids_from_mask(self.mask)[:, -new_ids.shape[1]:]
        names = [o.name for o in self.session.get_outputs()]
        outputs = dict(zip(names, self.session.run(names, feed), strict=True))
        self._past = {self._past_of[m[1], m[2]]: v for n, v in outputs.items()
                      if (m := OPTIMUM_PRESENT.match(n))}
        return outputs[LOGITS]
