"""GPT-Neo attention on `torch.nn.functional.scaled_dot_product_attention`, as "sdpa".

transformers 4.57's GPT-Neo offers `eager` (fp32 scores, a full [T, T] score matrix per
head, local layers masked from it) and `flash_attention_2` (the flash-attn package). This
module adds a third entry to its `GPT_NEO_ATTENTION_CLASSES` table: a subclass of the eager
`GPTNeoSelfAttention` that keeps its weights, projections and KV-cache update and replaces
only the score computation. After `register()`, `GPTNeoConfig(attn_implementation="sdpa")`,
`from_pretrained(..., attn_implementation="sdpa")`, Trainer and `generate` all use it; the
model class is not copied. (GPT-Neo builds its attention from that table, not from
transformers' `AttentionInterface`, so registering a function there would not reach it.)

GPT-Neo's semantics, kept exactly:

- no 1/sqrt(head_dim) scaling (`scale=1.0`);
- global layers are causal; local layers see the last `window_size` keys including the
  current one, counted in cache positions: the same `bias` buffer eager slices;
- the padding mask is added the way eager adds it (see `combined_mask`);
- attention dropout in training mode (`config.attention_dropout`);
- `output_attentions=True` or a `head_mask` take the eager code (SDPA returns no weights).

Padding rows need care. A left-padded query whose allowed keys are all padding has every
score at the float minimum: eager's softmax is uniform over them, and that row's output
counts (it predicts the first real token), so its gradient flows back through the scores.
PyTorch's CPU flash kernel gets that gradient wrong (its log-sum-exp, MIN + log n, rounds to
MIN; measured here: gradients off by up to 25x relative), so on the CPU a backward pass
through a padding mask uses SDPA's math kernel, which equals eager exactly. Packed training
blocks have no padding mask and keep the fast kernels. On CUDA, transformers' mask builder
unmasks such rows itself before they get here (its rule for every SDPA model), so padding
rows there attend to their keys by score instead of uniformly: only the first real token's
prediction of a padded batch differs from eager.

Registering also makes the model's mask builder take its "sdpa" branch: with no padding it
passes no mask, so global layers run with `is_causal=True` (the flash kernels on CUDA).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers.models.gpt_neo import modeling_gpt_neo as neo


def combined_mask(allowed: torch.Tensor, attention_mask: torch.Tensor,
                  dtype: torch.dtype) -> torch.Tensor:
    """The additive mask that gives SDPA eager GPT-Neo's softmax, row for row.

    Eager computes `where(allowed, scores, MIN) + attention_mask` (MIN = the lowest finite
    float, the padding mask holding 0 or MIN). Adding `where(allowed, 0, MIN) +
    attention_mask` to the scores gives the same values: a key that is outside the window
    AND padding sums to -inf, a key that is only one of the two stays at MIN. So a padding
    query, whose allowed keys are all padding, still attends uniformly to them as in eager
    instead of getting a row of -inf (which SDPA's kernels turn into NaN or zeros). The
    padding mask is clamped to the lowest finite value of
    `dtype` first: the float32 minimum rounds to -inf in bfloat16.

    Args:
        allowed: bool [1, 1, q, k], True where the layer may attend (causal / window).
        attention_mask: float [batch, 1, q, >= k] additive padding + causal mask.
        dtype: the query's dtype (what SDPA computes in).

    Returns:
        float [batch, 1, q, k] in `dtype`.
    """
    lowest = torch.finfo(dtype).min
    padding = attention_mask[:, :, :, : allowed.shape[-1]].clamp(min=lowest).to(dtype)
    return torch.where(allowed, 0.0, lowest).to(dtype) + padding


class GPTNeoSdpaAttention(neo.GPTNeoSelfAttention):
    """GPT-Neo self-attention whose scores and weighted sum run in one SDPA call."""

    def __init__(self, config, attention_type, layer_id=None):
        super().__init__(config, attention_type, layer_id)
        self.attention_type = attention_type
        self._weights_asked = False

    def forward(self, hidden_states, *args, output_attentions=False, **kwargs):
        # The inherited forward does not pass output_attentions on to _attn.
        self._weights_asked = output_attentions
        return super().forward(hidden_states, *args, output_attentions=output_attentions, **kwargs)

    def _attn(self, query, key, value, attention_mask=None, head_mask=None):
        if self._weights_asked or head_mask is not None:
            return super()._attn(query, key, value, attention_mask, head_mask)
        q_len, k_len = query.size(-2), key.size(-2)
        mask, causal, kernels = None, False, contextlib.nullcontext()
        if attention_mask is not None:
            mask = combined_mask(self.bias[:, :, k_len - q_len : k_len, :k_len], attention_mask,
                                 query.dtype)
            if query.requires_grad and query.device.type == "cpu":
                kernels = sdpa_kernel(SDPBackend.MATH)  # see "Padding rows" above
        elif self.attention_type == "global" and q_len == k_len:
            causal = True  # the mask SDPA builds itself: lets CUDA pick a flash kernel
        elif self.attention_type == "local" or q_len > 1:
            mask = self.bias[:, :, k_len - q_len : k_len, :k_len]
        # (a global layer with one query and no padding attends to every key: no mask)
        with kernels:
            out = F.scaled_dot_product_attention(
                query, key, value, attn_mask=mask, is_causal=causal, scale=1.0,
                dropout_p=self.attn_dropout.p if self.training else 0.0)
        return out, None


def register() -> None:
    """Add "sdpa" to transformers' GPT-Neo attention implementations (idempotent).

    A GPT-Neo model that names no implementation keeps the library's choice, eager:
    registering must not change models built elsewhere in the same process (an export,
    a test) that did not ask for it.

    Raises:
        RuntimeError: the installed transformers has no GPT-Neo attention table to extend.
    """
    table = getattr(neo, "GPT_NEO_ATTENTION_CLASSES", None)
    if table is None:
        raise RuntimeError("this transformers version has no GPT_NEO_ATTENTION_CLASSES; "
                           "finetune's sdpa attention is written for transformers 4.57")
    if table.get("sdpa") is GPTNeoSdpaAttention:
        return
    table["sdpa"] = GPTNeoSdpaAttention
    model_class = neo.GPTNeoPreTrainedModel
    model_class._supports_sdpa = True
    library_choice = model_class.get_correct_attn_implementation

    def eager_unless_asked(self, requested_attention, is_init_check=False):
        return library_choice(self, requested_attention or "eager", is_init_check)

    model_class.get_correct_attn_implementation = eager_unless_asked
