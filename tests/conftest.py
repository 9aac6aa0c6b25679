"""Fixtures shared by every test package: a tiny GPT-Neo built here, never downloaded.

The tiny model has two layers (global then local attention) with a local window of 8
tokens, so any prompt longer than 8 tokens exercises local attention. Its tokenizer is a
byte-level BPE trained in the fixture on sentences written for these tests.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
EOS = "<|endoftext|>"
TINY_WINDOW = 8

# Written for these tests: short, abstract-like sentences.
TINY_CORPUS = [
    "We propose a new method for learning sparse representations of graphs.",
    "Our experiments show that the model outperforms strong baselines on three benchmarks.",
    "In this paper we study the complexity of scheduling problems with deadlines.",
    "The proposed algorithm converges in polynomial time under mild assumptions.",
    "We present a neural network architecture for semantic parsing of questions.",
    "Results on real data demonstrate the effectiveness of our approach.",
    "This work introduces a framework for verifying distributed protocols.",
    "We prove lower bounds for the communication cost of consensus.",
    "A large corpus of scientific abstracts is used to train the language model.",
    "The attention mechanism allows the decoder to focus on relevant tokens.",
    "Über-fast décodage: naïve Unicode text with accents, 数学 and emoji 🚀 must survive.",
    "Let $x \\in \\mathbb{R}^n$ be a vector and $\\epsilon > 0$ a small constant.",
]


def shared_dir() -> Path | None:
    """The `shared/` material beside the checkout (or $NEO_SHARED_DIR), if present."""
    path = Path(os.environ.get("NEO_SHARED_DIR", REPO_ROOT.parent / "shared"))
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def shared() -> Path:
    """Path to ../shared; skips the test with a reason where it is absent."""
    path = shared_dir()
    if path is None:
        pytest.skip("../shared is absent (set NEO_SHARED_DIR to point at it)")
    return path


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory) -> Path:
    """A byte-level BPE tokenizer (~400 tokens) saved as a GPT2TokenizerFast directory."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2TokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(TINY_CORPUS * 4, vocab_size=400, min_frequency=1, special_tokens=[EOS])
    tok = GPT2TokenizerFast(tokenizer_object=bpe._tokenizer, eos_token=EOS, bos_token=EOS, unk_token=EOS)
    tok.model_max_length = 256
    out = tmp_path_factory.mktemp("tiny_tokenizer")
    tok.save_pretrained(out)
    return out


def build_tiny_gpt_neo(vocab_size: int, eos_id: int, seed: int = 0):
    """A 2-layer GPT-Neo (global + local, window 8) with deterministic random weights."""
    import torch
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    config = GPTNeoConfig(
        vocab_size=vocab_size,
        max_position_embeddings=256,
        hidden_size=32,
        num_layers=2,
        num_heads=4,
        attention_types=[[["global", "local"], 1]],
        window_size=TINY_WINDOW,
        intermediate_size=64,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        # Wider than the usual 0.02 so logits are peaked and greedy has no near-ties.
        initializer_range=0.2,
        use_cache=True,
    )
    torch.manual_seed(seed)
    return GPTNeoForCausalLM(config).eval()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    """A saved Hugging Face model directory (config, safetensors, tokenizer, generation config)."""
    from transformers import AutoTokenizer, GenerationConfig

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    model = build_tiny_gpt_neo(len(tok), tok.eos_token_id)
    out = tmp_path_factory.mktemp("tiny_model")
    model.save_pretrained(out)
    GenerationConfig(
        bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id, max_new_tokens=32
    ).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_onnx_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """The tiny model exported with optimum (text-generation-with-past), fp32 `model.onnx`."""
    from optimum.exporters.onnx import main_export

    out = tmp_path_factory.mktemp("tiny_onnx")
    main_export(str(tiny_model_dir), output=out, task="text-generation-with-past", device="cpu")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                 "generation_config.json"):
        if (tiny_model_dir / name).exists() and not (out / name).exists():
            shutil.copy(tiny_model_dir / name, out / name)
    return out


@pytest.fixture(scope="session")
def exported(tmp_path_factory, tiny_model_dir) -> tuple[int, Path]:
    """(exit code, output dir) of `python -m export --quantize int8 int4` on the tiny model
    (decode graphs fp32, int8, int4 by default)."""
    from export.cli import main

    out = tmp_path_factory.mktemp("export") / "onnx"
    code = main(["--model", str(tiny_model_dir), "--output-dir", str(out),
                 "--quantize", "int8", "int4", "--int4-block-size", "16",
                 "--int8-block-size", "16"])
    return code, out
