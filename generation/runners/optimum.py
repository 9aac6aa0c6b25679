"""The runner of optimum's graph (`model.onnx`, `model_int8.onnx`...): a KV cache per request.

The session is stateless; each request owns a `KVCache`. The cache lives in OrtValues that
ONNX Runtime allocated as outputs of the previous step and that are bound, as they are, as the
inputs of the next step (IO binding): no copy to numpy and back per step, and on CUDA the cache
stays on the GPU (it crosses to the host only when rows are broadcast or dropped). The exported
graph itself concatenates past and new keys/values (its `present` outputs are one position
longer than its `past` inputs); that one copy per step is the model's, not ours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from ..contract import LOGITS, OPTIMUM_PAST, OPTIMUM_PRESENT

_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


@dataclass(frozen=True)
class ModelIO:
    """The session's input and output names, and the cache layout [batch, heads, seq, head_dim]."""

    input_ids: str
    attention_mask: str | None
    position_ids: str | None
    past: tuple[str, ...]  # layer 0 key, layer 0 value, layer 1 key, ...
    present: tuple[str, ...]  # in the same order as `past`
    logits: str
    heads: int
    head_dim: int
    cache_dtype: type


def map_io(session: ort.InferenceSession, heads: int = 0, hidden: int = 0) -> ModelIO:
    """Map the session's input/output names (the one place that knows them).

    Args:
        session: an optimum text-generation-with-past session.
        heads, hidden: from config.json, used when the cache shape is symbolic.

    Returns:
        The names and cache layout.

    Raises:
        ValueError: the model lacks input_ids, logits, or a matching past/present pair per layer.
    """
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = [o.name for o in session.get_outputs()]

    def layer_order(names, pattern):
        found = {(int(m[1]), m[2]): n for n in names if (m := pattern.match(n))}
        layers = len(found) // 2
        order = [(i, kind) for i in range(layers) for kind in ("key", "value")]
        return tuple(found[k] for k in order if k in found), layers

    past, layers = layer_order(inputs, OPTIMUM_PAST)
    present, _ = layer_order(outputs, OPTIMUM_PRESENT)
    issues = [f"the model has no {n!r}" for n in ("input_ids",) if n not in inputs]
    issues += [] if LOGITS in outputs else [f"the model has no {LOGITS!r} output"]
    if not past or len(past) != 2 * layers or len(present) != len(past):
        issues.append("the model has no KV cache (past_key_values.N.key/value in, present.N.key/value out); "
                      "export it with task text-generation-with-past")
    if issues:
        raise ValueError("; ".join(issues))
    shape = inputs[past[0]].shape
    n_heads = shape[1] if isinstance(shape[1], int) else heads
    head_dim = shape[3] if isinstance(shape[3], int) else hidden // max(heads, 1)
    return ModelIO(
        input_ids="input_ids",
        attention_mask="attention_mask" if "attention_mask" in inputs else None,
        position_ids="position_ids" if "position_ids" in inputs else None,
        past=past,
        present=present,
        logits=LOGITS,
        heads=int(n_heads),
        head_dim=int(head_dim),
        cache_dtype=_DTYPES.get(inputs[past[0]].type, np.float32),
    )


class KVCache:
    """The optimum graph's cache seen as slots (the API of `decode_graph.SlotCache`), for the engine's
    one pattern: prefill one sequence, copy it to more slots, step them, drop finished ones.

    The graph concatenates past and new keys, so every row holds the same number of tokens and
    a batch is one set of tensors [rows, heads, length, head_dim] (`values`): the OrtValues the
    model returned, or numpy arrays right after rows were rearranged. Slot moves are recorded
    in `row_of` and applied as one row gather at the next `step`.
    """

    def __init__(self, rows: int, capacity: int):
        self.rows = rows
        self.capacity = capacity
        self.lengths = np.zeros(rows, dtype=np.int64)
        self.row_of = np.full(rows, -1, dtype=np.int64)  # slot -> row of `values`, -1: none
        self.values: list = []

    def copy(self, src: int, dst: int) -> None:
        """Make slot `dst` a copy of slot `src`."""
        self.row_of[dst], self.lengths[dst] = self.row_of[src], self.lengths[src]

    def move(self, src: int, dst: int) -> None:
        """Move slot `src` into slot `dst` and free `src`."""
        self.copy(src, dst)
        if src != dst:
            self.clear(src)

    def clear(self, slot: int) -> None:
        """Forget slot's tokens."""
        self.row_of[slot], self.lengths[slot] = -1, 0

    def gather(self, batch: int) -> None:
        """Lay out `values` as slots 0..batch-1 (one copy, only after slots were rearranged)."""
        rows = self.row_of[:batch]
        if len(self.values) and (rows.size != self._batch() or (rows != np.arange(batch)).any()):
            # Whole-row copies (np.concatenate of slices): 5-8x faster than fancy indexing on
            # [rows, heads, length, head_dim] tensors (220 MB at 1,000 tokens x 3 rows).
            self.values = [np.concatenate([a[r:r + 1] for r in rows]) for a in
                           (v if isinstance(v, np.ndarray) else v.numpy() for v in self.values)]
        self.row_of[:batch] = np.arange(batch)
        self.row_of[batch:], self.lengths[batch:] = -1, 0

    def _batch(self) -> int:
        value = self.values[0]
        return value.shape[0] if isinstance(value, np.ndarray) else value.shape()[0]


class OptimumRunner:
    """An optimum causal LM session with a KV cache, driven through IO binding. It has the
    decode runner's API (`new_cache`, `prefill`, `step`) but only for sequences of one length:
    prefill into an empty cache (or more chunks of its one sequence), then step all slots."""

    # Every slot of a step must hold the same number of tokens, and a prompt goes in one piece:
    # a scheduler serves its requests one at a time.
    ragged = False
    chunked_prefill = False
    prefill_graph = False

    def __init__(self, session: ort.InferenceSession, provider: str, io: ModelIO):
        self.session = session
        self.provider = provider
        self.io = io

    @property
    def layers(self) -> int:
        """Transformer layers of the graph."""
        return len(self.io.past) // 2

    def slot_bytes(self, capacity: int) -> int:
        """Bytes of one slot's cache at `capacity` tokens (float32 keys and values)."""
        return len(self.io.past) * self.io.heads * self.io.head_dim * capacity * 4

    def new_cache(self, rows: int, capacity: int) -> KVCache:
        """An empty cache of `rows` slots."""
        return KVCache(rows, capacity)

    def prefill(self, cache: KVCache, slot: int, token_ids, keep: int = 1) -> np.ndarray:
        """Feed one sequence's tokens (see `decode_graph.DecodeRunner.prefill`).

        Raises:
            ValueError: another slot holds tokens (this graph cannot mix sequences), or keep
                is out of range.
        """
        busy = np.flatnonzero(cache.lengths)
        if busy.size > 1 or (busy.size == 1 and busy[0] != slot):
            raise ValueError("an optimum graph holds one sequence per cache while prefilling; "
                             "export a decode graph (python -m export) to mix sequences")
        ids = np.asarray([token_ids], dtype=np.int64)
        if not 1 <= keep <= ids.shape[1]:
            raise ValueError(f"keep must be in [1, {ids.shape[1]}], got {keep}")
        if busy.size == 0:
            empty = np.zeros((1, self.io.heads, 0, self.io.head_dim), dtype=self.io.cache_dtype)
            cache.values = [empty] * len(self.io.past)
        cache.row_of[slot] = 0
        return self._forward(ids, cache, slot, keep)[0]

    def step(self, cache: KVCache, tokens: np.ndarray) -> np.ndarray:
        """Feed one new token to each of slots 0..B-1 (B = len(tokens)); slots beyond B are
        dropped.

        Returns:
            float32 logits [B, vocab].

        Raises:
            ValueError: the slots hold different numbers of tokens.
        """
        batch = len(tokens)
        if len(set(cache.lengths[:batch].tolist())) != 1:
            raise ValueError("an optimum graph steps only slots of equal length; "
                             "export a decode graph (python -m export) for mixed lengths")
        cache.gather(batch)
        return self._forward(np.asarray(tokens, dtype=np.int64).reshape(-1, 1), cache,
                             slice(0, batch), 1)[:, 0]

    def _forward(self, input_ids: np.ndarray, cache: KVCache, slots, keep: int) -> np.ndarray:
        rows, new = input_ids.shape
        past = int(cache.lengths[slots].max())
        total = past + new
        if total > cache.capacity:
            raise ValueError(f"a slot would hold {total} tokens; the cache holds {cache.capacity}")
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.io.input_ids, input_ids)
        if self.io.attention_mask:
            binding.bind_cpu_input(self.io.attention_mask, np.ones((rows, total), dtype=np.int64))
        if self.io.position_ids:
            positions = np.arange(past, total, dtype=np.int64)
            binding.bind_cpu_input(self.io.position_ids, np.broadcast_to(positions, (rows, new)).copy())
        for name, value in zip(self.io.past, cache.values, strict=True):
            if isinstance(value, np.ndarray):
                binding.bind_cpu_input(name, value)
            else:
                binding.bind_ortvalue_input(name, value)
        # Logits come to the host (the sampler needs them); the cache stays where it is.
        binding.bind_output(self.io.logits, "cpu")
        for name in self.io.present:
            binding.bind_output(name, self.provider, 0)
        self.session.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        cache.values = outputs[1:]
        cache.lengths[slots] = total
        # Copied out: the array must not outlive the OrtValue that owns its buffer.
        return np.array(outputs[0].numpy()[:, -keep:, :], dtype=np.float32)
