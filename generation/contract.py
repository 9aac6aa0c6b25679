"""What `python -m export` writes and `generation` reads: the one place that states it.

export/ imports these names (export may import generation; generation never imports export),
so a file name, a graph input or decode.json's format is written down once.

An export directory holds:
- optimum's graphs (`OPTIMUM_FILES`): `text-generation-with-past`, inputs `input_ids`,
  `attention_mask`, `position_ids`, `past_key_values.{i}.key/value`; outputs `logits`,
  `present.{i}.key/value` (past + new positions).
- the decode graphs (`DECODE_FILES`) and `decode.json` (`DECODE_JSON`, format
  `DECODE_FORMAT`) that lists them: inputs `DECODE_INPUTS` and `past_key.{i}` /
  `past_value.{i}`, outputs `logits` and `present_key.{i}` / `present_value.{i}`, each present
  bound to the same buffer as its past (GroupQueryAttention updates the cache in place).
- optionally a prefill graph (`PREFILL_FILES`), named by decode.json's `prefill`
  ({decode precision: {"file", "kind"}}): the same inputs, outputs and cache layout as the
  decode graph it pairs with, other kernels; the engine prefills prompts with it and steps with
  the decode graph. A decode.json without `prefill` prefills with the decode graph.
"""

from __future__ import annotations

import re

PRECISIONS = ("fp32", "int8", "int4")

# optimum's graphs, by precision.
OPTIMUM_FILES = {"fp32": "model.onnx", "int8": "model_int8.onnx", "int4": "model_int4.onnx"}
OPTIMUM_PAST = re.compile(r"^past_key_values\.(\d+)\.(key|value)$")
OPTIMUM_PRESENT = re.compile(r"^present\.(\d+)\.(key|value)$")

# The decode graphs, by precision, and the file that lists them.
DECODE_FILES = {p: f"decode_{p}.onnx" for p in PRECISIONS}
DECODE_JSON = "decode.json"
DECODE_FORMAT = 1
# The decode graph's non-cache inputs, in this order.
DECODE_INPUTS = ("input_ids", "position_ids", "seqlens_k", "total_sequence_length", "logits_to_keep")
# Prefill graphs by kind (export.decode.prefill); "fp32" is the fp32 decode graph itself.
PREFILL_FILES = {"int4-fp32": "prefill_int4_fp32.onnx", "int8-dynamic": "prefill_int8_dynamic.onnx",
                 "fp32": DECODE_FILES["fp32"]}
# An int64 [1] input of the padded (quantized) decode graphs: the rows each weight matmul is
# edge-padded to; the runner feeds 2, or 1 where its start-up probe showed a lone row matches.
MIN_ROWS = "min_rows"
DECODE_PAST = re.compile(r"^past_(key|value)\.(\d+)$")
LOGITS = "logits"


def decode_past(kind: str, layer: int) -> str:
    """The decode graph's cache input of one layer (`kind` "key" or "value")."""
    return f"past_{kind}.{layer}"


def decode_present(kind: str, layer: int) -> str:
    """The decode graph's cache output bound to the same buffer as `decode_past(kind, layer)`."""
    return f"present_{kind}.{layer}"
