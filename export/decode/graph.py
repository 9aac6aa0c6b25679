"""A GPT-Neo decode graph built by hand from the checkpoint's tensors, for the engine.

The graph (see the decode-graph contract in the README of export/): token and position
embeddings, per layer LayerNorm → one packed q/k/v projection → `com.microsoft.
GroupQueryAttention` (scale 1.0: GPT-Neo does not scale scores; the layer's window for local
layers; the cache updated in place when the runner binds present to past) → out_proj →
residual → LayerNorm → MLP with gelu_new → residual; ln_f and the tied lm_head on the last
`logits_to_keep` positions only.

Weight matmuls are `Gemm` (fp32, transB so the weights stay in PyTorch's [out, in] layout and
the tied lm_head shares the embedding table) or `MatMulNBits` (8/4-bit, accuracy level 4).
The residual stream is kept 2-D [rows, hidden]; with `pad_rows` it is edge-padded to at least
two rows because MatMulNBits (accuracy level 4) has a single-row path that can round
differently from the multi-row one, depending on the CPU and block size (measured on an
AVX-512 VNNI Xeon: blocks 64/128 differ for 4-bit, block 128 for 8-bit, block 32 for neither;
reported on AVX2 Zen 3 for 4-bit block 32). The graph runs on CPUs we cannot test, so the
quantized graphs pad to `min_rows` rows, an input: the runner feeds 2 (a row's logits are
bitwise identical alone or in a batch, for ~2 ms (4-bit) to ~4 ms (8-bit) more CPU a step at
batch 1 on GPT-Neo-125M, nothing at ≥ 2), or 1 where its start-up probe
(`generation/runners/pad_probe.py`) found a lone row bitwise equal to the batched one.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from export.decode.checkpoint import DecodeConfig
from export.decode.nbits import quantize_blockwise
from generation.contract import DECODE_INPUTS, LOGITS, MIN_ROWS, decode_past, decode_present

INPUT_IDS, POSITION_IDS, SEQLENS_K, TOTAL_LENGTH, LOGITS_TO_KEEP = DECODE_INPUTS
# The fixed inputs' element types and shapes (the contract names them and fixes their order).
INPUT_TYPES = {INPUT_IDS: (TensorProto.INT64, ["batch", "seq"]),
               POSITION_IDS: (TensorProto.INT64, ["batch", "seq"]),
               SEQLENS_K: (TensorProto.INT32, ["batch"]),
               TOTAL_LENGTH: (TensorProto.INT32, []),
               LOGITS_TO_KEEP: (TensorProto.INT64, [])}

OPSET = 21
BITS = {"fp32": None, "int8": 8, "int4": 4}
INT64_MAX = np.iinfo(np.int64).max


class DecodeGraphBuilder:
    """Appends named nodes for one GPT-Neo decode graph (onnxruntime-genai builder style).

    Args:
        config: the model's shape (`DecodeConfig.from_dict`).
        weights: the checkpoint's tensors by HF name (`transformer.h.0.attn...`), float32.
        precision: "fp32", "int8" or "int4".
        block_size: MatMulNBits block size along K.
        pad_rows: edge-pad matmul inputs to >= 2 rows (None: for the quantized precisions).
        window_cache: local layers' caches hold only their window (GQA `sliding_window_cache`):
            their `past_*` inputs are [batch, heads, window, head_dim], a fixed size.
        accuracy_level: MatMulNBits' compute type (4: int8 dot products; 0/1: fp32).
    """

    def __init__(self, config: DecodeConfig, weights: dict[str, np.ndarray], precision: str = "fp32",
                 block_size: int = 32, pad_rows: bool | None = None, window_cache: bool = False,
                 accuracy_level: int = 4):
        if precision not in BITS:
            raise ValueError(f"precision must be one of {sorted(BITS)}, got {precision!r}")
        self.config, self.weights, self.precision = config, weights, precision
        self.block_size, self.window_cache = block_size, window_cache
        self.accuracy_level = accuracy_level
        self.pad_rows = precision != "fp32" if pad_rows is None else pad_rows
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []

    # ---- primitives -------------------------------------------------------------------------
    def make_node(self, op: str, inputs: list[str], name: str, domain: str = "", outputs=None,
                  **attrs) -> str:
        """Append one node; returns its first output's name (`{name}/output_0` by default)."""
        outputs = outputs or [f"{name}/output_0"]
        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, domain=domain, **attrs))
        return outputs[0]

    def make_initializer(self, name: str, array: np.ndarray) -> str:
        """Add a constant tensor; returns its name."""
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def weight(self, key: str) -> np.ndarray:
        """A checkpoint tensor as float32 (`transformer.` prefix implied)."""
        return np.asarray(self.weights[f"transformer.{key}"], dtype=np.float32)

    def const(self, name: str, values, dtype=np.int64) -> str:
        """A small int64 constant under /model/constants."""
        return self.make_initializer(f"/model/constants/{name}", np.asarray(values, dtype=dtype))

    # ---- building blocks --------------------------------------------------------------------
    def make_inputs_and_outputs(self):
        """The contract's graph inputs and outputs."""
        c = self.config
        f32 = TensorProto.FLOAT
        self.inputs += [helper.make_tensor_value_info(n, *INPUT_TYPES[n]) for n in DECODE_INPUTS]
        if self.pad_rows:  # the runner feeds 2, or 1 where its probe allows (see MIN_ROWS)
            self.inputs.append(helper.make_tensor_value_info(MIN_ROWS, TensorProto.INT64, [1]))
        caches = [["batch", c.heads, (self.window_cache and w) or "capacity", c.head_dim]
                  for w in c.windows]
        for i, cache in enumerate(caches):
            self.inputs += [helper.make_tensor_value_info(decode_past(k, i), f32, cache)
                            for k in ("key", "value")]
        self.outputs.append(helper.make_tensor_value_info(LOGITS, f32, ["batch", "keep", c.vocab_size]))
        for i, cache in enumerate(caches):
            self.outputs += [helper.make_tensor_value_info(decode_present(k, i), f32, cache)
                             for k in ("key", "value")]

    def make_rows(self, x: str, name: str) -> str:
        """The number of rows of a 2-D tensor, as int64 [1]."""
        return self.make_node("Shape", [x], f"{name}/Shape", start=0, end=1)

    def make_pad(self, x: str, name: str) -> str:
        """Edge-pad a 2-D tensor to >= 2 rows (identity without `pad_rows`)."""
        if not self.pad_rows:
            return x
        rows = self.make_rows(x, name)
        missing = self.make_node("Sub", [MIN_ROWS, rows], f"{name}/Sub")
        missing = self.make_node("Max", [missing, self.const("zero", [0])], f"{name}/Max")
        pads = self.make_node("Concat", [self.const("zeros_2", [0, 0]), missing,
                                         self.const("zero", [0])], f"{name}/Concat", axis=0)
        return self.make_node("Pad", [x, pads], f"{name}/Pad", mode="edge")

    def make_unpad(self, y: str, rows: str, name: str) -> str:
        """Keep the first `rows` rows of a padded result (identity without `pad_rows`)."""
        if not self.pad_rows:
            return y
        return self.make_node("Slice", [y, self.const("zero", [0]), rows, self.const("zero", [0])],
                              f"{name}/Slice")

    def make_matmul(self, x: str, w: np.ndarray, bias: np.ndarray | None, name: str,
                    tied: str | None = None) -> str:
        """x [rows, K] @ Wᵀ (+ bias) for W [N, K]: Gemm (fp32) or MatMulNBits.

        `tied` names an fp32 initializer already holding W (the embedding table), reused
        instead of a second copy."""
        bits = BITS[self.precision]
        b = None if bias is None else self.make_initializer(f"{name}.bias", bias.astype(np.float32))
        if bits is None:
            weight = tied or self.make_initializer(f"{name}.weight", w)
            return self.make_node("Gemm", [x, weight] + ([b] if b else []), f"{name}/Gemm", transB=1)
        packed, scales = quantize_blockwise(w, bits, self.block_size)
        inputs = [x, self.make_initializer(f"{name}.weight_q{bits}", packed),
                  self.make_initializer(f"{name}.scales", scales)]
        if b:
            inputs += ["", "", b]
        n, k = w.shape
        return self.make_node("MatMulNBits", inputs, f"{name}/MatMulNBits", domain="com.microsoft",
                              K=k, N=n, bits=bits, block_size=self.block_size,
                              accuracy_level=self.accuracy_level)

    def make_layernorm(self, x: str, key: str, name: str) -> str:
        """LayerNormalization over the hidden axis with the checkpoint's `key.weight/bias`."""
        scale = self.make_initializer(f"{name}.weight", self.weight(f"{key}.weight"))
        bias = self.make_initializer(f"{name}.bias", self.weight(f"{key}.bias"))
        return self.make_node("LayerNormalization", [x, scale, bias], f"{name}/LayerNorm",
                              axis=-1, epsilon=self.config.layer_norm_epsilon)

    def make_embedding(self) -> str:
        """wte[input_ids] + wpe[position_ids], flattened to [rows, hidden] (and padded)."""
        wte = self.make_initializer("transformer.wte.weight", self.weight("wte.weight"))
        wpe = self.make_initializer("transformer.wpe.weight", self.weight("wpe.weight"))
        tok = self.make_node("Gather", [wte, INPUT_IDS], "/model/embed_tokens/Gather")
        pos = self.make_node("Gather", [wpe, POSITION_IDS], "/model/embed_positions/Gather")
        x = self.make_node("Add", [tok, pos], "/model/embeddings/Add")
        x = self.make_node("Reshape", [x, self.const("rows_hidden", [-1, self.config.hidden])],
                           "/model/embeddings/Reshape")
        self.rows = self.make_rows(x, "/model/embeddings")
        self.batch_seq = self.make_node("Shape", [INPUT_IDS], "/model/input_ids/Shape")
        return self.make_pad(x, "/model/embeddings/pad")

    def make_attention(self, i: int, x: str) -> str:
        """Packed q/k/v projection, GroupQueryAttention on the cache, out_proj."""
        c, p = self.config, f"/model/layers.{i}/attn"
        key = f"h.{i}.attn.attention"
        qkv_w = np.concatenate([self.weight(f"{key}.{n}_proj.weight") for n in "qkv"], axis=0)
        qkv = self.make_matmul(x, qkv_w, None, f"{p}/qkv_proj")
        qkv = self.make_unpad(qkv, self.rows, f"{p}/qkv_proj/unpad")
        shape = self.make_node("Concat", [self.batch_seq, self.const("qkv_hidden", [3 * c.hidden])],
                               f"{p}/qkv_shape/Concat", axis=0)
        qkv = self.make_node("Reshape", [qkv, shape], f"{p}/qkv/Reshape")
        window = c.windows[i] or -1
        out = self.make_node(
            "GroupQueryAttention",
            [qkv, "", "", decode_past("key", i), decode_past("value", i), SEQLENS_K, TOTAL_LENGTH],
            f"{p}/GroupQueryAttention", domain="com.microsoft",
            outputs=[f"{p}/GroupQueryAttention/output_0", decode_present("key", i),
                     decode_present("value", i)],
            num_heads=c.heads, kv_num_heads=c.heads, scale=1.0, local_window_size=window, do_rotary=0,
            **({"sliding_window_cache": 1} if self.window_cache and window > 0 else {}))
        out = self.make_node("Reshape", [out, self.const("rows_hidden", [-1, c.hidden])],
                             f"{p}/output/Reshape")
        out = self.make_pad(out, f"{p}/output/pad")
        return self.make_matmul(out, self.weight(f"{key}.out_proj.weight"),
                                self.weight(f"{key}.out_proj.bias"), f"{p}/o_proj")

    def make_mlp(self, i: int, x: str) -> str:
        """c_fc → gelu_new (tanh approximation) → c_proj."""
        p, key = f"/model/layers.{i}/mlp", f"h.{i}.mlp"
        h = self.make_matmul(x, self.weight(f"{key}.c_fc.weight"), self.weight(f"{key}.c_fc.bias"),
                             f"{p}/fc1")
        h = self.make_node("Gelu", [h], f"{p}/act_fn/Gelu", approximate=self.config.gelu_approximate)
        return self.make_matmul(h, self.weight(f"{key}.c_proj.weight"),
                                self.weight(f"{key}.c_proj.bias"), f"{p}/fc2")

    def make_layer(self, i: int, x: str) -> str:
        """One transformer block with its two residual adds."""
        p = f"/model/layers.{i}"
        h = self.make_layernorm(x, f"h.{i}.ln_1", f"{p}/input_layernorm")
        x = self.make_node("Add", [x, self.make_attention(i, h)], f"{p}/attn/residual/Add")
        h = self.make_layernorm(x, f"h.{i}.ln_2", f"{p}/post_attention_layernorm")
        return self.make_node("Add", [x, self.make_mlp(i, h)], f"{p}/mlp/residual/Add")

    def make_lm_head(self, x: str) -> None:
        """ln_f, the last `logits_to_keep` positions of each row, the tied lm_head → logits."""
        c = self.config
        x = self.make_layernorm(x, "ln_f", "/model/norm")
        x = self.make_unpad(x, self.rows, "/model/norm/unpad")
        shape = self.make_node("Concat", [self.batch_seq, self.const("hidden", [c.hidden])],
                               "/model/norm/shape/Concat", axis=0)
        x = self.make_node("Reshape", [x, shape], "/model/norm/Reshape")
        keep = self.make_node("Unsqueeze", [LOGITS_TO_KEEP, self.const("zero", [0])],
                              "/model/logits_to_keep/Unsqueeze")
        start = self.make_node("Neg", [keep], "/model/logits_to_keep/Neg")
        x = self.make_node("Slice", [x, start, self.const("int64_max", [INT64_MAX]),
                                     self.const("one", [1])], "/model/logits_to_keep/Slice")
        x = self.make_node("Reshape", [x, self.const("rows_hidden", [-1, c.hidden])],
                           "/model/lm_head/input/Reshape")
        kept = self.make_rows(x, "/model/lm_head/input")
        wte, head = self.weight("wte.weight"), self.weights.get("lm_head.weight")
        untied = head is not None and not np.array_equal(head, wte)  # tie_word_embeddings=False
        y = self.make_matmul(self.make_pad(x, "/model/lm_head/pad"),
                             np.asarray(head, np.float32) if untied else wte, None, "/lm_head",
                             tied=None if untied else "transformer.wte.weight")
        y = self.make_unpad(y, kept, "/lm_head/unpad")
        batch = self.make_node("Slice", [self.batch_seq, self.const("zero", [0]), self.const("one", [1])],
                               "/model/batch/Slice")
        shape = self.make_node("Concat", [batch, self.const("keep_vocab", [-1, c.vocab_size])],
                               "/lm_head/shape/Concat", axis=0)
        self.make_node("Reshape", [y, shape], "/lm_head/Reshape", outputs=[LOGITS])

    def build(self) -> onnx.ModelProto:
        """The whole graph, checked with `onnx.checker`."""
        self.make_inputs_and_outputs()
        x = self.make_embedding()
        for i in range(self.config.layers):
            x = self.make_layer(i, x)
        self.make_lm_head(x)
        # A constant used by several make_* calls is added once.
        seen, unique = set(), []
        for init in self.initializers:
            if init.name not in seen:
                seen.add(init.name)
                unique.append(init)
        graph = helper.make_graph(self.nodes, f"gpt_neo_decode_{self.precision}", self.inputs,
                                  self.outputs, unique)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET),
                                                        helper.make_opsetid("com.microsoft", 1)],
                                  producer_name="neo-xscience export.decode_graph")
        model.ir_version = 10
        onnx.checker.check_model(model, full_check=False)
        return model


def build_decode_graph(config: DecodeConfig, weights: dict[str, np.ndarray], precision: str = "fp32",
                       block_size: int = 32, pad_rows: bool | None = None,
                       window_cache: bool = False) -> onnx.ModelProto:
    """Build one decode graph (see `DecodeGraphBuilder` for the arguments)."""
    return DecodeGraphBuilder(config, weights, precision, block_size, pad_rows, window_cache).build()
