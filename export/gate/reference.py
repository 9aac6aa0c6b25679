"""The gate's reference: the PyTorch model, run uncached, as transformers runs it."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def load_reference(model_dir: str | Path, device: str = "cpu"):
    """The PyTorch model (fp32, eval mode) and its tokenizer, as the gate's reference."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval().to(device)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return model, tokenizer


def position_ids_from_mask(attention_mask: np.ndarray) -> np.ndarray:
    """Positions as transformers computes them for left-padded batches.

    `cumsum(mask) - 1`, with pad columns set to 1 (their value is irrelevant: they are
    masked), exactly as `GenerationMixin.prepare_inputs_for_generation` does.
    """
    positions = np.cumsum(attention_mask, axis=-1) - 1
    positions[attention_mask == 0] = 1
    return positions.astype(np.int64)


def torch_logits(model, input_ids, attention_mask: np.ndarray | None = None) -> np.ndarray:
    """Uncached PyTorch forward; with a mask, transformers' mask-derived position ids.

    Args:
        model: a transformers causal LM in eval mode.
        input_ids: [batch, seq] token ids (array or nested lists).
        attention_mask: [batch, seq], 0 for left padding; None: every position is real (the
            model's own default positions and causal mask).

    Returns:
        logits [batch, seq, vocab] as float32 numpy.
    """
    import torch

    device = next(model.parameters()).device
    kwargs = {}
    if attention_mask is not None:
        kwargs = {"attention_mask": torch.as_tensor(attention_mask, device=device),
                  "position_ids": torch.as_tensor(position_ids_from_mask(attention_mask),
                                                  device=device)}
    with torch.no_grad():
        out = model(input_ids=torch.as_tensor(np.asarray(input_ids), device=device),
                    use_cache=False, **kwargs)
    return out.logits.float().cpu().numpy()
