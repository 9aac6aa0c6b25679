"""Read a model's JSON files and tokenizer, refusing a broken one in one line that names it.

A truncated download, a file that is not JSON or JSON of the wrong shape is the user's to fix
(re-export, re-download): `ModelFileError`, a ValueError, names the file and what is wrong.
"""

from __future__ import annotations

import json
import numbers
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from .sampling.params import SamplingParams


class ModelFileError(ValueError):
    """A model file that cannot be used: missing, truncated, not JSON, or not the right shape.
    The message names the file."""


@dataclass(frozen=True)
class ModelConfig:
    """What the engine needs from config.json and generation_config.json."""

    model_type: str
    context: int
    vocab_size: int
    layers: int
    heads: int
    hidden: int
    parameters: int
    eos_ids: tuple[int, ...]
    default_params: SamplingParams
    default_max_new_tokens: int | None


def read_json(path: Path) -> dict:
    """A JSON file that must hold an object.

    Raises:
        ModelFileError: unreadable, not UTF-8 JSON, or not an object.
    """
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFileError(f"{path} is not a valid JSON file ({_one_line(err)})") from None
    if not isinstance(data, dict):
        raise ModelFileError(f"{path} must hold a JSON object, not a {type(data).__name__}")
    return data


def load_tokenizer(meta_dir: Path) -> Tokenizer:
    """The `tokenizers` tokenizer from `meta_dir`/tokenizer.json.

    Raises:
        ModelFileError: the file is not a tokenizer `tokenizers` can read.
    """
    path = meta_dir / "tokenizer.json"
    try:
        return Tokenizer.from_file(str(path))
    except Exception as err:  # noqa: BLE001 - tokenizers raises plain Exception for bad files
        raise ModelFileError(f"{path} is not a valid tokenizer.json ({_one_line(err)})") from None


def read_config(meta_dir: Path) -> ModelConfig:
    """Read config.json and (when present) generation_config.json from `meta_dir`.

    Raises:
        ModelFileError: a file that is not JSON, or config.json lacking the context size,
            vocabulary size or layer count, or holding a value of the wrong type.
    """
    cfg = read_json(meta_dir / "config.json")
    gen_path = meta_dir / "generation_config.json"
    gen = read_json(gen_path) if gen_path.is_file() else {}

    def first(*keys):
        return next((cfg[k] for k in keys if cfg.get(k) is not None), None)

    sizes = {"context size": first("max_position_embeddings", "n_positions", "n_ctx"),
             "vocab_size": first("vocab_size"), "layers": first("num_layers", "n_layer", "num_hidden_layers"),
             "hidden size": first("hidden_size", "n_embd") or 0,
             "heads": first("num_heads", "n_head", "num_attention_heads") or 0}
    missing = [n for n in ("context size", "vocab_size", "layers") if sizes[n] is None]
    if missing:
        raise ModelFileError(f"{meta_dir / 'config.json'} lacks {', '.join(missing)}")
    bad = [f"{n} {v!r}" for n, v in sizes.items() if not _count(v, allow_zero=n in ("hidden size", "heads"))]
    if bad:
        raise ModelFileError(f"{meta_dir / 'config.json'}: not a count: {', '.join(bad)}")
    eos = gen.get("eos_token_id", cfg.get("eos_token_id"))
    eos_ids = tuple(eos) if isinstance(eos, list) else (() if eos is None else (eos,))
    if not all(_count(e, allow_zero=True) for e in eos_ids):
        raise ModelFileError(f"{gen_path if 'eos_token_id' in gen else meta_dir / 'config.json'}: "
                             f"eos_token_id must be token ids, got {eos!r}")
    try:
        defaults = default_params(gen)
        max_new = gen.get("max_new_tokens")
        parameters = count_parameters(cfg)
    except (TypeError, ValueError, KeyError) as err:
        raise ModelFileError(f"{gen_path} or config.json holds a value of the wrong type ({err})") from None
    if max_new is not None and not _count(max_new):
        raise ModelFileError(f"{gen_path}: max_new_tokens must be a count, got {max_new!r}")
    return ModelConfig(
        model_type=str(cfg.get("model_type", "")), context=sizes["context size"],
        vocab_size=sizes["vocab_size"], layers=sizes["layers"], heads=sizes["heads"],
        hidden=sizes["hidden size"], parameters=parameters, eos_ids=tuple(int(e) for e in eos_ids),
        default_params=defaults, default_max_new_tokens=max_new)


def _count(value, allow_zero: bool = False) -> bool:
    return (isinstance(value, numbers.Integral) and not isinstance(value, bool)
            and value >= (0 if allow_zero else 1))


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())[:200]


def default_params(gen: dict) -> SamplingParams:
    """SamplingParams equivalent to transformers' defaults for a generation_config.json dict."""
    penalty = float(gen.get("repetition_penalty") or 1.0)
    if not gen.get("do_sample", False):
        return SamplingParams(repetition_penalty=penalty)
    return SamplingParams(
        temperature=float(gen.get("temperature", 1.0) or 0.0),
        top_k=int(gen.get("top_k", 50) or 0),  # transformers samples with top_k=50 by default
        top_p=float(gen.get("top_p", 1.0) or 1.0),
        min_p=float(gen.get("min_p") or 0.0),
        repetition_penalty=penalty,
    )


def count_parameters(cfg: dict) -> int:
    """Parameter count of a GPT-Neo or GPT-2 config (tied embeddings counted once); 0 if unknown."""
    kind = cfg.get("model_type")
    if kind not in ("gpt_neo", "gpt2"):
        return 0
    h = cfg.get("hidden_size") or cfg.get("n_embd")
    inner = cfg.get("intermediate_size") or cfg.get("n_inner") or 4 * h
    positions = cfg.get("max_position_embeddings") or cfg.get("n_positions")
    layers = cfg.get("num_layers") or cfg.get("n_layer")
    qkv_bias = 3 * h if kind == "gpt2" else 0  # GPT-Neo's q/k/v projections have no bias
    per_layer = 2 * h + 3 * h * h + qkv_bias + h * h + h + 2 * h + h * inner + inner + inner * h + h
    return cfg["vocab_size"] * h + positions * h + layers * per_layer + 2 * h
