"""The SDPA attention path against transformers' eager GPT-Neo attention, the reference.

Tolerance: both paths compute in fp32 and differ only in the order of the sums (SDPA's
blocked softmax against eager's full score matrix), a few float32 ulps (~1e-7 relative)
per value. 1e-5 leaves 100x room; gradients are judged relative to each tensor's largest
entry (atol = 1e-5 x max |grad|), so a bias of 1e-3 and an embedding of 1e+0 are held to
the same standard.

NEO_TEST_DEVICE=cuda runs the same checks on a GPU (scripts/gpu_run.sh does); there the
checks that need eager's exact padding-row semantics are skipped: transformers' mask builder
unmasks fully padded rows for every SDPA model on CUDA (see finetune/attention.py).
"""

import os

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, GPTNeoConfig, GPTNeoForCausalLM

from finetune import attention
from finetune.attention import GPTNeoSdpaAttention
from tests.conftest import TINY_WINDOW

VOCAB = 97
TOL = 1e-5
DEVICE = os.environ.get("NEO_TEST_DEVICE", "cpu")
eager_padding_rows = pytest.mark.skipif(
    DEVICE != "cpu", reason="on CUDA, transformers unmasks fully padded rows for SDPA models")


def config(attn: str, **overrides) -> GPTNeoConfig:
    """Two layers, global then local with a window of 8 (shorter than every prompt here)."""
    fields = dict(vocab_size=VOCAB, max_position_embeddings=64, hidden_size=32, num_layers=2,
                  num_heads=4, attention_types=[[["global", "local"], 1]],
                  window_size=TINY_WINDOW, intermediate_size=64, initializer_range=0.2,
                  bos_token_id=0, eos_token_id=0, pad_token_id=0)
    fields.update(overrides)
    return GPTNeoConfig(attn_implementation=attn, **fields)


def pair(**overrides) -> tuple[GPTNeoForCausalLM, GPTNeoForCausalLM]:
    """(eager, sdpa) models with the same weights."""
    attention.register()
    torch.manual_seed(0)
    eager = GPTNeoForCausalLM(config("eager", **overrides))
    sdpa = GPTNeoForCausalLM(config("sdpa", **overrides))
    sdpa.load_state_dict(eager.state_dict())
    return eager.to(DEVICE), sdpa.to(DEVICE)


def batch(left_padding: bool) -> dict[str, torch.Tensor]:
    """3 rows of 20 tokens (> the window); rows 1 and 2 left-padded by 5 and 12 when asked."""
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(1, VOCAB, (3, 20), generator=gen).to(DEVICE)
    if not left_padding:
        return {"input_ids": ids, "labels": ids}
    mask = torch.ones_like(ids)
    mask[1, :5] = 0
    mask[2, :12] = 0
    ids = ids.masked_fill(mask == 0, 0)
    return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}


def logits_and_grads(model, inputs):
    model.zero_grad()
    out = model(**inputs)
    out.loss.backward()
    return out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def assert_grads_close(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for name, ref in want.items():
        assert ref.abs().max() > 0, f"{name} got no gradient: the test would prove nothing"
        torch.testing.assert_close(got[name], ref, rtol=TOL, atol=TOL * ref.abs().max().item(),
                                   msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("left_padding", [False, pytest.param(True, marks=eager_padding_rows)],
                         ids=["packed", "left-padded"])
def test_logits_and_every_gradient_equal_eager(left_padding):
    eager, sdpa = pair()
    inputs = batch(left_padding)
    want_logits, want_grads = logits_and_grads(eager, inputs)
    got_logits, got_grads = logits_and_grads(sdpa, inputs)
    torch.testing.assert_close(got_logits, want_logits, rtol=TOL, atol=TOL)
    assert_grads_close(got_grads, want_grads)


def test_sdpa_modules_and_kernel_are_what_runs(monkeypatch):
    eager, sdpa = pair()
    assert all(isinstance(block.attn.attention, GPTNeoSdpaAttention) for block in sdpa.transformer.h)
    calls = []
    real = F.scaled_dot_product_attention
    monkeypatch.setattr(attention.F, "scaled_dot_product_attention",
                        lambda *a, **k: calls.append(k) or real(*a, **k))
    sdpa(**batch(left_padding=False))
    assert len(calls) == 2
    assert [c["is_causal"] for c in calls] == [True, False]  # global: no mask; local: window
    assert all(c["scale"] == 1.0 for c in calls)


def test_cached_generation_gives_eager_tokens():
    """Left-padded prompts longer than the window, 24 new tokens: the KV cache grows past
    the window, so the local layer's window slides over cached keys."""
    eager, sdpa = pair()
    inputs = batch(left_padding=True)
    del inputs["labels"]
    kwargs = dict(max_new_tokens=24, do_sample=False, pad_token_id=0, eos_token_id=None)
    want = eager.eval().generate(**inputs, **kwargs)
    assert torch.equal(sdpa.eval().generate(**inputs, **kwargs), want)
    assert torch.equal(sdpa.generate(**inputs, use_cache=False, **kwargs), want)


@pytest.mark.parametrize("saved_with", ["eager", "sdpa"])
def test_a_saved_model_generates_the_same_tokens_with_either_path(tmp_path, saved_with):
    eager, sdpa = pair()
    (eager if saved_with == "eager" else sdpa).save_pretrained(tmp_path)
    inputs = batch(left_padding=True)
    del inputs["labels"]
    kwargs = dict(max_new_tokens=16, do_sample=False, pad_token_id=0, eos_token_id=None)
    outs = {}
    for attn in ("eager", "sdpa"):
        model = AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation=attn).to(DEVICE)
        assert model.config._attn_implementation == attn
        outs[attn] = model.generate(**inputs, **kwargs)
    assert torch.equal(outs["sdpa"], outs["eager"])
    assert AutoModelForCausalLM.from_pretrained(tmp_path).config._attn_implementation == "eager"


def test_registering_leaves_models_that_did_not_ask_on_eager():
    attention.register()
    attention.register()  # idempotent
    model = GPTNeoForCausalLM(GPTNeoConfig(**{k: v for k, v in config("x").to_dict().items()
                                              if k in ("vocab_size", "hidden_size", "num_layers",
                                                       "num_heads", "attention_types")}))
    assert model.config._attn_implementation == "eager"


def mean_dropout_effect(model, seeds=range(4)) -> float:
    """Mean |train-mode logits - eval-mode logits| over a few fixed seeds."""
    inputs = batch(left_padding=False)
    with torch.no_grad():
        ref = model.eval()(**inputs).logits
        model.train()
        diffs = []
        for seed in seeds:
            torch.manual_seed(seed)
            diffs.append((model(**inputs).logits - ref).abs().mean().item())
    return sum(diffs) / len(diffs)


def test_attention_dropout_is_applied_in_training_only():
    eager, sdpa = pair(attention_dropout=0.2)
    effect_sdpa, effect_eager = mean_dropout_effect(sdpa), mean_dropout_effect(eager)
    assert effect_sdpa > 1e-3
    # Same rate on the same weights: a similar perturbation (not the same draws: the RNG use differs).
    assert 0.5 < effect_sdpa / effect_eager < 2.0
    _, no_dropout = pair(attention_dropout=0.0)
    assert mean_dropout_effect(no_dropout) == 0.0


@eager_padding_rows
def test_output_attentions_returns_eager_weights():
    eager, sdpa = pair()
    inputs = batch(left_padding=True)
    want = eager.eval()(**inputs, output_attentions=True).attentions
    got = sdpa.eval()(**inputs, output_attentions=True).attentions
    assert len(got) == 2 and all(g is not None for g in got)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("left_padding", [False, pytest.param(True, marks=eager_padding_rows)],
                         ids=["packed", "left-padded"])
def test_bf16_autocast_loss_matches_eager(left_padding):
    """bf16 autocast: SDPA computes the scores in bf16, eager in fp32, so the losses agree
    to bf16 precision. With padding this also checks the mask clamp: the float32 minimum
    rounds to -inf in bf16, and unclamped, padding rows attend to nothing instead of
    uniformly as in eager, which moves the first real token's loss (measured: 7e-3
    relative, against 3e-5 clamped)."""
    eager, sdpa = pair()
    inputs = batch(left_padding)
    losses = {}
    for name, model in (("eager", eager), ("sdpa", sdpa)):
        model.zero_grad()
        with torch.autocast(DEVICE, dtype=torch.bfloat16):
            loss = model(**inputs).loss
            with torch.no_grad():  # the no-grad path takes SDPA's fast CPU kernel
                losses[name, "no_grad"] = model(**inputs).loss.item()
        loss.backward()
        losses[name, "grad"] = loss.item()
    assert all(torch.isfinite(p.grad).all() for p in sdpa.parameters())
    for mode in ("grad", "no_grad"):
        assert losses["sdpa", mode] == pytest.approx(losses["eager", mode], rel=1e-3)
