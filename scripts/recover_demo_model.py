"""Rebuild `demo_model/` in the decode-graph format from the int8 ONNX file it shipped with.

    python scripts/recover_demo_model.py --data ../shared/data/arxiv-cs-abstracts.jsonl.gz \
        --work /tmp/demo_recover [--onnx demo_model/model_int8.onnx] [--out demo_model]

The repository kept only `model_int8.onnx` (optimum's graph, dynamic int8 MatMulInteger
weights, per output channel; embeddings, layer norms and biases fp32; the lm_head a
quantized copy of the embedding table). Steps:
  recover  a GPT-Neo PyTorch checkpoint: fp32 tensors as they are, each int8 weight
           dequantized ((q - zero_point) * scale: exactly the values the shipped model
           multiplies by), the lm_head tied to the fp32 embedding table as trained
  verify   PyTorch on the recovered weights against the int8 ONNX model (logits, greedy)
  export   `python -m export` (decode graphs, gate, decode.json)
  bundle   demo_model/ = decode.json, the default decode graph, config, tokenizer, card
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script: make the project's packages importable
NODE = re.compile(r"^/(transformer(?:/h\.\d+)?(?:/\w+)*)/(?:LayerNormalization|Add|MatMul_quant)$")
EMBEDDINGS = ("transformer.wte.weight", "transformer.wpe.weight")
BIASED = ("out_proj", "c_fc", "c_proj")
PROMPTS = ("In this paper, we propose a novel method for",
           "Deep neural networks have achieved remarkable success in",
           "We study the problem of")


def recovered_state_dict(onnx_path: Path) -> dict[str, np.ndarray]:
    """The checkpoint's tensors by HF name, read back from an optimum int8 graph.

    Tensors are found through the nodes that use them (`/transformer/h.0/ln_1/
    LayerNormalization` → `transformer.h.0.ln_1.weight/bias`), not by initializer name:
    the exporter stores equal tensors once (an untrained model's layer norms all share one,
    reached through Identity nodes).
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:  # Identity(shared initializer) stands for a deduplicated one
        if node.op_type == "Identity" and node.input[0] in inits:
            inits[node.output[0]] = inits[node.input[0]]
    state = {k: v.astype(np.float32) for k, v in inits.items() if k in EMBEDDINGS}
    for node in model.graph.node:
        match = NODE.match(node.name)
        if not match:
            continue
        key = match.group(1).replace("/", ".")
        if node.op_type == "LayerNormalization":
            state[f"{key}.weight"], state[f"{key}.bias"] = (
                inits[n].astype(np.float32) for n in node.input[1:3])
        elif node.op_type == "Add" and key.endswith(BIASED):
            state[f"{key}.bias"] = next(inits[n] for n in node.input if n in inits).astype(np.float32)
        elif node.op_type == "MatMulInteger":
            base = node.input[1].removesuffix("_quantized")
            q = inits[node.input[1]].astype(np.float32)  # [in, out], per output channel
            w = (q - inits[f"{base}_zero_point"].astype(np.float32)) * inits[f"{base}_scale"]
            state[f"{key}.weight"] = w.T.copy()
    return state


def recover(onnx_path: Path, bundle: Path, out: Path) -> Path:
    """Write a transformers GPT-Neo directory (safetensors, tokenizer, configs, old card)."""
    import torch
    from transformers import GPT2TokenizerFast, GPTNeoConfig, GPTNeoForCausalLM

    config = GPTNeoConfig.from_pretrained(bundle)
    model = GPTNeoForCausalLM(config).eval()
    state = {k: torch.from_numpy(v) for k, v in recovered_state_dict(onnx_path).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "lm_head.weight" and not k.endswith(".attn.attention.bias")]
    if missing or unexpected:
        raise SystemExit(f"recovered tensors do not fit the config: missing {missing}, "
                         f"unexpected {unexpected}")
    model.tie_weights()
    model.save_pretrained(out)
    eos = "<|endoftext|>"
    GPT2TokenizerFast(tokenizer_file=str(bundle / "tokenizer.json"), eos_token=eos, bos_token=eos,
                      unk_token=eos, model_max_length=config.max_position_embeddings).save_pretrained(out)
    for name in ("generation_config.json", "README.md"):
        shutil.copy(bundle / name, out / name)
    return out


def verify(model_dir: Path, onnx_path: Path, tokens: int = 32) -> dict:
    """PyTorch on the recovered weights vs the int8 ONNX model: max |logit diff| on the
    prompts, and how many greedy tokens agree (int8 activations differ, so not all need to)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from export.gate.checks import greedy_fn, teacher_forced_fn
    from export.optimum.gate import open_runner

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    runner = open_runner(onnx_path, heads=model.config.num_heads, hidden=model.config.hidden_size)
    score = teacher_forced_fn(runner, model.config.max_position_embeddings)
    greedy = greedy_fn(runner)
    diff, same, total, first = 0.0, 0, 0, []
    for prompt in PROMPTS:
        ids = tok(prompt)["input_ids"]
        onnx_logits = score(ids)
        with torch.no_grad():
            ref = model(torch.tensor([ids])).logits.numpy()
            want = model.generate(torch.tensor([ids]), max_new_tokens=tokens, do_sample=False,
                                  pad_token_id=tok.eos_token_id)[0, len(ids):].tolist()
        diff = max(diff, float(np.abs(onnx_logits - ref[0]).max()))
        got = greedy(ids, tokens, eos_id=None)
        same += sum(a == b for a, b in zip(want, got, strict=False))
        total += len(want)
        first.append(next((i for i, (a, b) in enumerate(zip(want, got, strict=False)) if a != b), len(want)))
    return {"max_abs_logit_diff": diff, "greedy_tokens_equal": same, "greedy_tokens": total,
            "first_difference_per_prompt": first}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--onnx", type=Path, default=REPO / "demo_model" / "model_int8.onnx")
    parser.add_argument("--data", required=True, help="the abstracts the demo was trained on "
                        "(its test split is the gate's held-out text)")
    parser.add_argument("--work", type=Path, required=True, help="scratch directory")
    parser.add_argument("--out", type=Path, default=REPO / "demo_model", help="where the bundle goes")
    args = parser.parse_args(argv)
    from build_demo_model import bundle_files, write_heldout  # scripts/
    from card import refresh_card

    args.work.mkdir(parents=True, exist_ok=True)
    source = args.work / "int8_source"  # the bundle is replaced below: keep what we read
    if not source.exists():
        shutil.copytree(args.onnx.parent, source)
    onnx_path = source / args.onnx.name
    model_dir = recover(onnx_path, source, args.work / "recovered")
    check = verify(model_dir, onnx_path)
    print("[recover] PyTorch (recovered) vs int8 ONNX: " + json.dumps(check), flush=True)
    (args.work / "recovery_check.json").write_text(json.dumps(check, indent=2) + "\n")
    heldout = write_heldout(args.data, args.work)
    subprocess.run([sys.executable, "-m", "export", "--model", str(model_dir), "--output-dir",
                    str(args.work / "onnx"), "--overwrite", "--eval-text", str(heldout)],
                   check=True, cwd=REPO)
    files = bundle_files(args.work / "onnx", args.out)
    provenance = (
        f"These weights were recovered from the int8 ONNX file this demo first shipped (its "
        f"fp32 weights were not kept): each int8 weight dequantized, exactly the values that file "
        f"multiplied by; embeddings, layer norms and biases as stored (fp32). PyTorch on them "
        f"reproduces that file's greedy continuations ({check['greedy_tokens_equal']} of "
        f"{check['greedy_tokens']} tokens over {len(PROMPTS)} prompts) with logits within "
        f"{check['max_abs_logit_diff']:.3f} (its activations were quantized to int8). This "
        f"folder holds `decode.json` and its default graph only, out of the export below.")
    card = args.out / "README.md"
    card.write_text(refresh_card(card.read_text(encoding="utf-8"), args.out, provenance), encoding="utf-8")
    print(f"[recover] {args.out}: {', '.join(files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
