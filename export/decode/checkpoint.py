"""What the decode-graph builder needs from a GPT-Neo checkpoint: its shape and its tensors,
checked against each other."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# GPT-Neo's activation names → ONNX Gelu's `approximate` attribute.
GELU = {"gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu": "none"}
LAYER = re.compile(r"^transformer\.h\.(\d+)\.")


@dataclass(frozen=True)
class DecodeConfig:
    """The shape of a GPT-Neo model, as the decode graph and decode.json describe it."""

    layers: int
    heads: int
    hidden: int
    vocab_size: int
    context: int
    windows: tuple[int, ...]  # per layer: 0 for global attention, else the local window
    layer_norm_epsilon: float
    gelu_approximate: str

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @classmethod
    def from_dict(cls, config: dict) -> DecodeConfig:
        """Read a GPT-Neo `config.json` dict.

        Raises:
            ValueError: not GPT-Neo, or a field of the wrong type or value (one line).
        """
        if config.get("model_type") != "gpt_neo":
            raise ValueError(f"the decode graph is built for GPT-Neo, not model_type "
                             f"{config.get('model_type')!r}")
        ints = {}
        for key in ("num_layers", "num_heads", "hidden_size", "vocab_size",
                    "max_position_embeddings", "window_size"):
            value = config.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"config.json: {key} must be a positive integer, got {value!r}")
            ints[key] = value
        if ints["hidden_size"] % ints["num_heads"]:
            raise ValueError("config.json: hidden_size must be a multiple of num_heads")
        kinds = config.get("attention_layers")
        if not isinstance(kinds, list) or len(kinds) != ints["num_layers"] or \
                not set(kinds) <= {"global", "local"}:
            raise ValueError("config.json: attention_layers must list 'global'/'local' per layer")
        act = config.get("activation_function", "gelu_new")
        if act not in GELU:
            raise ValueError(f"config.json: activation_function {act!r} is not supported "
                             f"(one of {sorted(GELU)})")
        eps = config.get("layer_norm_epsilon", 1e-5)
        if isinstance(eps, bool) or not isinstance(eps, int | float) or not 0 < eps < 1:
            raise ValueError(f"config.json: layer_norm_epsilon must be a small positive number, got {eps!r}")
        return cls(ints["num_layers"], ints["num_heads"], ints["hidden_size"], ints["vocab_size"],
                   ints["max_position_embeddings"],
                   tuple(ints["window_size"] if k == "local" else 0 for k in kinds),
                   float(eps), GELU[act])

    @classmethod
    def from_dir(cls, model_dir: str | Path) -> DecodeConfig:
        """Read `model_dir/config.json` (ValueError when unreadable or not GPT-Neo)."""
        try:
            config = json.loads((Path(model_dir) / "config.json").read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{model_dir}/config.json: unreadable ({err})") from err
        if not isinstance(config, dict):
            raise ValueError(f"{model_dir}/config.json: not a JSON object")
        return cls.from_dict(config)


def load_weights(model_dir: str | Path) -> dict[str, np.ndarray]:
    """The checkpoint's tensors by name, float32, from its `*.safetensors` file(s).

    Raises:
        ValueError: no safetensors file, an unreadable (corrupted, truncated) one, or a
            missing/mis-shaped tensor (one line).
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise ValueError(f"{model_dir}: no *.safetensors weights (save the model with safe_serialization)")
    weights: dict[str, np.ndarray] = {}
    for path in files:
        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ValueError(f"{path}: corrupted or unreadable safetensors file ({first})") from err
        weights.update({k: v.astype(np.float32) for k, v in tensors.items()})
    return weights


def read_shapes(model_dir: str | Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape from the `*.safetensors` headers, without reading a tensor.

    Raises:
        ValueError: no safetensors file, or an unreadable header (one line).
    """
    from safetensors import SafetensorError, safe_open

    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise ValueError(f"{model_dir}: no *.safetensors weights (save the model with safe_serialization)")
    shapes: dict[str, tuple[int, ...]] = {}
    for path in files:
        try:
            with safe_open(str(path), framework="numpy") as f:
                shapes.update({k: tuple(f.get_slice(k).get_shape()) for k in f.keys()})  # noqa: SIM118
        except (SafetensorError, OSError, ValueError) as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ValueError(f"{path}: corrupted or unreadable safetensors file ({first})") from err
    return shapes


def expected_shapes(config: DecodeConfig, shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple]:
    """The shape of every tensor the graph needs, as the config implies it (the MLP's inner
    size, which config.json may leave unset, is read from the checkpoint)."""
    e, v = config.hidden, config.vocab_size
    need = {"transformer.wte.weight": (v, e), "transformer.wpe.weight": (config.context, e),
            "transformer.ln_f.weight": (e,), "transformer.ln_f.bias": (e,)}
    for i in range(config.layers):
        p = f"transformer.h.{i}."
        for n in "qkv":
            need[f"{p}attn.attention.{n}_proj.weight"] = (e, e)
        need[f"{p}attn.attention.out_proj.weight"] = (e, e)
        need[f"{p}attn.attention.out_proj.bias"] = (e,)
        for ln in ("ln_1", "ln_2"):
            need[f"{p}{ln}.weight"] = need[f"{p}{ln}.bias"] = (e,)
        inner = (shapes.get(f"{p}mlp.c_fc.weight") or (0,))[0]
        need[f"{p}mlp.c_fc.weight"] = (inner, e)
        need[f"{p}mlp.c_fc.bias"] = (inner,)
        need[f"{p}mlp.c_proj.weight"] = (e, inner)
        need[f"{p}mlp.c_proj.bias"] = (e,)
    return need


def check_shapes(config: DecodeConfig, shapes: dict[str, tuple[int, ...]]) -> None:
    """Raise ValueError (one line) when config.json disagrees with the checkpoint's tensors:
    the layer count first (so a huge num_layers costs nothing), then every name and shape."""
    layers = {int(m[1]) for name in shapes if (m := LAYER.match(name))}
    if len(layers) != config.layers or layers != set(range(len(layers))):
        raise ValueError(f"config.json: num_layers is {config.layers} but the weights hold "
                         f"{len(layers)} layers (transformer.h.N)")
    for name, shape in expected_shapes(config, shapes).items():
        if name not in shapes:
            raise ValueError(f"weights: {name} is missing")
        if tuple(shapes[name]) != shape:
            raise ValueError(f"weights: {name} has shape {tuple(shapes[name])} (config.json "
                             f"implies {shape})")


def check_weights(config: DecodeConfig, weights: dict[str, np.ndarray]) -> None:
    """Raise ValueError (one line) when a tensor the graph needs is missing, mis-shaped or
    not finite."""
    shapes = {k: tuple(w.shape) for k, w in weights.items()}
    check_shapes(config, shapes)
    for name in expected_shapes(config, shapes):
        if not np.isfinite(weights[name]).all():
            raise ValueError(f"weights: {name} has non-finite values")


def read_checkpoint(model_dir: str | Path) -> tuple[DecodeConfig, dict[str, np.ndarray]]:
    """The model's shape and tensors, checked (ValueError, one line, when unusable).

    config.json is checked against the tensor names and shapes in the safetensors headers
    before any tensor is loaded, so a config that disagrees is refused at once.
    """
    config = DecodeConfig.from_dir(model_dir)
    check_shapes(config, read_shapes(model_dir))
    weights = load_weights(model_dir)
    check_weights(config, weights)
    return config, weights
