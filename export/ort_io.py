"""Feeding an optimum `text-generation-with-past` ONNX graph with numpy, without optimum.

The graph takes `input_ids`, `attention_mask` (past + new columns), `position_ids` and one
`past_key_values.{i}.key/value` pair per layer shaped [batch, heads, past, head_dim]; it
returns `logits` and `present.{i}.key/value` (past + new). These helpers are what the
validation gate and the benchmark drive a session with.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

PAST_PREFIX = "past_key_values."
PRESENT_PREFIX = "present."


def open_session(path: str | Path, device: str = "cpu", threads: int = 0) -> ort.InferenceSession:
    """Open an ONNX file on the CPU (or CUDA, falling back to CPU).

    Args:
        path: the `.onnx` file.
        device: "cpu" or "cuda".
        threads: intra-op threads; 0 lets ONNX Runtime choose.

    Returns:
        The inference session.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    providers = ["CPUExecutionProvider"]
    if device == "cuda":
        providers.insert(0, "CUDAExecutionProvider")
    return ort.InferenceSession(str(path), sess_options=options, providers=providers)


def past_names(session: ort.InferenceSession) -> list[str]:
    """The cache inputs of the session, in graph order."""
    return [i.name for i in session.get_inputs() if i.name.startswith(PAST_PREFIX)]


def present_to_past(name: str) -> str:
    """Map an output name `present.{i}.key` to its input name `past_key_values.{i}.key`."""
    return PAST_PREFIX + name[len(PRESENT_PREFIX):]


def empty_past(session: ort.InferenceSession, batch: int) -> dict[str, np.ndarray]:
    """Zero-length caches ([batch, heads, 0, head_dim]) for a prefill call.

    The head count and head size are fixed integers in the graph's input shapes; the
    batch and past length are symbolic.
    """
    past = {}
    for inp in session.get_inputs():
        if inp.name.startswith(PAST_PREFIX):
            _, heads, _, head_dim = inp.shape
            past[inp.name] = np.zeros((batch, heads, 0, head_dim), dtype=np.float32)
    return past


def position_ids_from_mask(attention_mask: np.ndarray) -> np.ndarray:
    """Positions as transformers computes them for left-padded batches.

    `cumsum(mask) - 1`, with pad columns set to 1 (their value is irrelevant: they are
    masked), exactly as `GenerationMixin.prepare_inputs_for_generation` does.
    """
    positions = np.cumsum(attention_mask, axis=-1) - 1
    positions[attention_mask == 0] = 1
    return positions.astype(np.int64)


def forward(
    session: ort.InferenceSession,
    input_ids: np.ndarray,
    attention_mask: np.ndarray,
    past: dict[str, np.ndarray] | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Run one call: a prefill (past None) or a cached step.

    Args:
        session: an optimum text-generation-with-past session.
        input_ids: [batch, new] token ids.
        attention_mask: [batch, past + new], 1 for real tokens, 0 for (left) padding.
        past: the previous call's cache (as returned here), or None for a prefill.

    Returns:
        (logits [batch, new, vocab] float32, the new cache keyed by input name).
    """
    batch, new = input_ids.shape
    if past is None:
        past = empty_past(session, batch)
    feed = dict(past)
    feed["input_ids"] = input_ids.astype(np.int64)
    feed["attention_mask"] = attention_mask.astype(np.int64)
    wanted = {i.name for i in session.get_inputs()}
    if "position_ids" in wanted:
        feed["position_ids"] = position_ids_from_mask(feed["attention_mask"])[:, -new:]
    names = [o.name for o in session.get_outputs()]
    outputs = dict(zip(names, session.run(names, feed), strict=True))
    cache = {present_to_past(n): v for n, v in outputs.items() if n.startswith(PRESENT_PREFIX)}
    return outputs["logits"], cache


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


def greedy(
    session: ort.InferenceSession,
    prompt: Sequence[int],
    new_tokens: int,
    eos_id: int | None = None,
) -> list[int]:
    """Greedy continuation of one prompt with the KV cache (prefill + single-token steps).

    Args:
        session: an optimum text-generation-with-past session.
        prompt: the prompt's token ids.
        new_tokens: how many tokens to produce at most.
        eos_id: stop after emitting this token (None: never stop early).

    Returns:
        The new token ids.
    """
    ids = np.asarray([prompt], dtype=np.int64)
    mask = np.ones_like(ids)
    logits, past = forward(session, ids, mask)
    out: list[int] = []
    for _ in range(new_tokens):
        token = int(np.argmax(logits[0, -1]))
        out.append(token)
        if token == eos_id:
            break
        mask = np.concatenate([mask, np.ones((1, 1), dtype=np.int64)], axis=1)
        logits, past = forward(session, np.asarray([[token]]), mask, past)
    return out
