"""The decode graph's runner: a slot cache allocated once, prefill into one slot, step slots 0..B-1.

The decode graph (`decode_*.onnx`, written by `python -m export`; see `decode.json`) attends with
`com.microsoft.GroupQueryAttention`, which writes each row's new keys and values into the cache
at that row's own position when the same buffer is bound as `past_*` input and `present_*`
output. So the cache is plain numpy memory, allocated once per batch as
[rows, heads, capacity, head_dim] per layer, and a call on B rows binds the contiguous view of
slots 0..B-1: nothing is copied or reallocated per step. Each slot has its own length, so rows
of one batch may hold different numbers of tokens.

Window caches (`python -m export`'s default, decode.json's `window_cache`): a local layer's
cache input has a fixed length, its window W, and GQA (`sliding_window_cache=1`) keeps there the
slot's last min(length, W) tokens in order, oldest first, shifting older ones out (measured on
onnxruntime 1.31.1: step by step, prompts and chunks longer than W, chunks on top of a slot
already past W, rows of different lengths: all match windowed attention). So those layers never
limit a slot's length; the growing ("capacity") layers do.

Batch invariance: a row's logits are bitwise the same whatever other slots run beside it (the
graph is built for it: fp32 kernels work row by row, and the quantized graphs edge-pad every
weight matmul to `min_rows` = 2 rows, because MatMulNBits may round a lone row differently).
So a slot's text never depends on its neighbours. `pad_probe.probe_single_row` checks on this
CPU whether a lone row (min_rows 1) already gives the bitwise logits it gets beside other rows;
only then does the runner feed min_rows 1 and skip the padding.

The model call knows nothing of requests: a scheduler decides which sequence sits in which slot,
keeps slots 0..B-1 filled (`SlotCache.move` the last slot into a freed one) and calls `step`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from ..contract import DECODE_INPUTS, DECODE_PAST, LOGITS, MIN_ROWS, decode_past, decode_present


@dataclass(frozen=True)
class DecodeIO:
    """The decode graph's cache inputs (`past_key.0`, `past_value.0`, `past_key.1`, ...), the
    matching outputs, and the cache layout; the fixed inputs have the contract's names."""

    past: tuple[str, ...]
    present: tuple[str, ...]
    heads: int
    head_dim: int
    # Per cache input: a fixed length (a window cache: the layer's last W tokens), or None (a
    # growing cache, as long as the slot).
    capacity: tuple[int | None, ...]
    vocab_size: int


def map_decode_io(session: ort.InferenceSession) -> DecodeIO:
    """Read the cache names and shapes of a decode-graph session.

    Raises:
        ValueError: the session is not a decode graph (an input or a past/present pair missing).
    """
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    found = {(int(m[2]), m[1]) for n in inputs if (m := DECODE_PAST.match(n))}
    layers = len(found) // 2
    pairs = [(kind, i) for i in range(layers) for kind in ("key", "value")]
    past = tuple(decode_past(*p) if (p[1], p[0]) in found else "" for p in pairs)
    present = tuple(decode_present(*p) for p in pairs)
    issues = [f"the decode graph has no input {n!r}" for n in DECODE_INPUTS if n not in inputs]
    vocab = outputs[LOGITS].shape[-1] if LOGITS in outputs else None
    issues += [] if isinstance(vocab, int) else [
        f"the decode graph has no {LOGITS!r} output with a fixed vocabulary size"]
    if not layers or not all(past) or any(p not in outputs for p in present):
        issues.append("the decode graph lacks past_key.N/past_value.N inputs with matching "
                      "present_key.N/present_value.N outputs")
    if issues:
        raise ValueError("; ".join(issues))
    shape = inputs[past[0]].shape
    return DecodeIO(
        past=past, present=present, heads=int(shape[1]), head_dim=int(shape[3]),
        capacity=tuple(s if isinstance(s, int) else None
                       for s in (inputs[p].shape[2] for p in past)),
        vocab_size=vocab,
    )


class SlotCache:
    """The keys and values of up to `rows` sequences ("slots"), allocated once.

    Attributes:
        arrays: per cache input of the graph (layer 0 key, layer 0 value, ...), float32
            [rows, heads, capacity, head_dim], or [rows, heads, window, head_dim] for a window
            cache (holding a slot's last min(length, window) tokens, oldest first).
        lengths: int64 [rows]; slot s holds lengths[s] tokens (positions 0..lengths[s]-1).
        rows, capacity: the slot count and the most tokens a slot can hold (window caches
            hold any number: they keep only the last window).
    """

    def __init__(self, io: DecodeIO, rows: int, capacity: int):
        self.rows = rows
        self.capacity = capacity
        # Zeros, not np.empty: positions past a slot's length are masked by the graph, but
        # garbage NaNs there could still leak through a 0 * NaN.
        self.arrays = [np.zeros((rows, io.heads, c or capacity, io.head_dim), dtype=np.float32)
                       for c in io.capacity]
        self.lengths = np.zeros(rows, dtype=np.int64)
        self._bound: dict[int, object] = {}  # batch size -> the step's IO binding (runner-owned)
        self._logits: np.ndarray | None = None  # [rows, 1, vocab]: every step's logits (runner-owned)

    def copy(self, src: int, dst: int) -> None:
        """Make slot `dst` a copy of slot `src` (e.g. broadcast one prompt to several rows)."""
        n = int(self.lengths[src])
        if src != dst:
            for a in self.arrays:
                # A window cache past its window is full: the whole buffer is the slot's state
                # (so this holds whatever order the kernel keeps the window in).
                a[dst, :, :n] = a[src, :, :n]
        self.lengths[dst] = n

    def move(self, src: int, dst: int) -> None:
        """Move slot `src` into slot `dst` and free `src`: with src = the last busy slot, this
        closes the gap a finished row left, keeping the batch at slots 0..B-1."""
        self.copy(src, dst)
        if src != dst:
            self.lengths[src] = 0

    def clear(self, slot: int) -> None:
        """Forget slot's tokens (its memory is reused by the next prefill)."""
        self.lengths[slot] = 0

    def views(self, start: int, stop: int) -> list[ort.OrtValue]:
        """OrtValues over slots start..stop-1 of every cache array (no copy: the graph writes
        through them into `arrays`)."""
        return [ort.OrtValue.ortvalue_from_numpy(a[start:stop]) for a in self.arrays]


class DecodeRunner:
    """Runs a decode graph on a `SlotCache`: `prefill` one slot, `step` slots 0..B-1.

    Args:
        session: a CPU session of a decode graph.
        provider: the provider that runs it (reported in Engine.info).
        prefill_session: a session of a prefill graph (decode.json's `prefill`: the same
            contract and cache layout, other kernels) that runs `prefill`; None: `session` does.

    Raises:
        ValueError: a graph is not a decode graph, or the two graphs' caches differ.
    """

    # Slots of different lengths share a step, and a prompt may be fed in several chunks.
    ragged = True
    chunked_prefill = True

    def __init__(self, session: ort.InferenceSession, provider: str = "cpu",
                 prefill_session: ort.InferenceSession | None = None):
        self.session = session
        self.provider = provider
        self.io = map_decode_io(session)
        self.prefill_session = prefill_session or session
        self.prefill_graph = prefill_session is not None
        if prefill_session is not None and map_decode_io(prefill_session) != self.io:
            # The decode graph continues from the cache the prefill graph leaves.
            raise ValueError("the prefill graph's cache inputs/outputs differ from the decode "
                             "graph's (re-export both with python -m export)")
        # The rows the graph pads each matmul to (None: a graph without the input). One buffer,
        # bound by every binding, so the probe's answer reaches the bindings made before it.
        self._padded = {id(s) for s in (session, self.prefill_session)
                        if MIN_ROWS in {i.name for i in s.get_inputs()}}
        self.min_rows = np.array([2], dtype=np.int64) if id(session) in self._padded else None

    @property
    def layers(self) -> int:
        """Transformer layers of the graph."""
        return len(self.io.past) // 2

    def slot_bytes(self, capacity: int) -> int:
        """Bytes of one slot's cache at `capacity` tokens (window caches at their window)."""
        return sum(4 * self.io.heads * (c or capacity) * self.io.head_dim for c in self.io.capacity)

    def new_cache(self, rows: int, capacity: int) -> SlotCache:
        """A cache of `rows` slots of `capacity` tokens each (window caches at their window)."""
        if rows < 1 or capacity < 1:
            raise ValueError(f"a cache needs rows >= 1 and capacity >= 1, got {rows}, {capacity}")
        return SlotCache(self.io, rows, capacity)

    def prefill(self, cache: SlotCache, slot: int, token_ids, keep: int = 1) -> np.ndarray:
        """Append tokens to one slot (a prompt, or the next chunk of one) and return logits.

        Args:
            cache: the cache; `cache.lengths[slot]` grows by len(token_ids).
            slot: which slot, 0 .. cache.rows - 1. Its tokens so far stay as its context, so a
                long prompt may be fed in several chunks.
            token_ids: the new tokens (at least one).
            keep: how many of the last positions get logits (1 to continue decoding;
                len(token_ids) for teacher-forced scoring).

        Returns:
            float32 [keep, vocab]: row j is the prediction after token len(token_ids) - keep + j.

        Raises:
            ValueError: a bad slot, no tokens, keep out of range, or the slot would overflow.
        """
        ids = np.asarray(token_ids, dtype=np.int64).reshape(1, -1)
        seq = ids.shape[1]
        self._check(cache, [slot], seq)
        if not 1 <= keep <= seq:
            raise ValueError(f"keep must be in [1, {seq}], got {keep}")
        start = int(cache.lengths[slot])
        total = start + seq
        feeds = _feeds(ids, np.arange(start, total, dtype=np.int64)[None],
                       np.array([total - 1], dtype=np.int32), total, keep)
        logits = np.empty((1, keep, self.io.vocab_size), dtype=np.float32)
        binding = self._bind(cache.views(slot, slot + 1), feeds, logits, self.prefill_session)
        self.prefill_session.run_with_iobinding(binding)
        cache.lengths[slot] = total
        return logits[0]

    def step(self, cache: SlotCache, tokens: np.ndarray) -> np.ndarray:
        """Append one token to each of slots 0..B-1 (B = len(tokens)) in one batched call.

        Args:
            cache: the cache; each of lengths[0:B] grows by one. Slots may hold different
                numbers of tokens.
            tokens: int [B], the next token of each slot.

        Returns:
            float32 [B, vocab], the logits after each slot's new token. A view of a buffer
            that the next `step` on this cache overwrites: use it (or copy it) before then.

        Raises:
            ValueError: B is 0 or beyond cache.rows, or a slot is full or empty.
        """
        batch = len(tokens)
        lengths = cache.lengths[:batch]
        longest = int(lengths.max()) if 0 < batch <= cache.rows else -1
        if longest < 0 or longest + 1 > cache.capacity or lengths.min() == 0:
            self._check(cache, range(batch), 1, need_past=True)  # raises, saying what is wrong
        bound = cache._bound.get(batch)
        if bound is None:
            # Bound once per batch size: later steps only rewrite these small input buffers.
            # Every size writes its logits into the first rows of one buffer: a buffer per
            # size would grow to rows * (rows + 1) / 2 rows of logits as sizes appear (235 MiB
            # for the serving loop's 49 slots and GPT-Neo's 50,257 tokens).
            if cache._logits is None:
                cache._logits = np.empty((cache.rows, 1, self.io.vocab_size), dtype=np.float32)
            feeds = _feeds(np.zeros((batch, 1), np.int64), np.zeros((batch, 1), np.int64),
                           np.zeros(batch, np.int32), 0, 1)
            logits = cache._logits[:batch]
            bound = cache._bound[batch] = (self._bind(cache.views(0, batch), feeds, logits),
                                           feeds, logits)
        binding, feeds, logits = bound
        feeds["input_ids"][:, 0] = tokens
        feeds["position_ids"][:, 0] = lengths
        feeds["seqlens_k"][:] = lengths  # (length + 1 new) - 1
        feeds["total_sequence_length"][()] = longest + 1
        self.session.run_with_iobinding(binding)
        lengths += 1
        return logits[:, 0]

    def _check(self, cache: SlotCache, slots, seq: int, need_past: bool = False) -> None:
        slots = list(slots)
        if not slots or slots[-1] >= cache.rows or min(slots) < 0:
            where = f"{slots[0]}..{slots[-1]}" if slots else "(none)"
            raise ValueError(f"slots {where} are outside the cache's {cache.rows} rows")
        if seq < 1:
            raise ValueError("no tokens to feed")
        lengths = cache.lengths[slots]
        if lengths.max() + seq > cache.capacity:
            raise ValueError(f"a slot would hold {int(lengths.max()) + seq} tokens; "
                             f"the cache holds {cache.capacity}")
        if need_past and lengths.min() == 0:
            raise ValueError("step needs every slot 0..B-1 prefilled first")

    def _bind(self, views: list[ort.OrtValue], feeds: dict[str, np.ndarray],
              logits: np.ndarray, session: ort.InferenceSession | None = None) -> ort.IOBinding:
        session = session or self.session
        binding = session.io_binding()
        if id(session) in self._padded:
            feeds = {**feeds, MIN_ROWS: self.min_rows if self.min_rows is not None
                     else np.array([2], dtype=np.int64)}
        for name, value in feeds.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value))
        for past, present, view in zip(self.io.past, self.io.present, views, strict=True):
            # The same OrtValue in and out: the graph updates the cache in place.
            binding.bind_ortvalue_input(past, view)
            binding.bind_ortvalue_output(present, view)
        binding.bind_ortvalue_output(LOGITS, ort.OrtValue.ortvalue_from_numpy(logits))
        return binding


def _feeds(input_ids, position_ids, seqlens_k, total: int, keep: int) -> dict[str, np.ndarray]:
    """The graph's non-cache inputs as numpy buffers (bound without copies, so rewriting them in
    place changes what the next run reads), keyed by the contract's names."""
    return dict(zip(DECODE_INPUTS, (input_ids, position_ids, seqlens_k, np.array(total, dtype=np.int32),
                                    np.array(keep, dtype=np.int64)), strict=True))
