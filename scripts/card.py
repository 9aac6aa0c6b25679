"""The model card of the bundled demo model, written from what the build measured."""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

REBUILD_NOTE = """(tokenizer → `python -m finetune --from-scratch` → `python -m export` → this folder: `decode.json`
and its default decode graph). The bundled weights were recovered from the int8 file of the first
build (whose fp32 weights were not kept) by `python scripts/recover_demo_model.py --data
../shared/data/arxiv-cs-abstracts.jsonl.gz --work /tmp/demo_recover`."""
SAMPLE_PROMPTS = ("In this paper, we propose a novel method for",
                  "Deep neural networks have achieved remarkable success in")


def _samples(out: Path) -> str:
    """The refreshed card's continuations (its two prompts, top-k 40 / top-p 0.9)."""
    from generation import SamplingParams

    return continuations(out, SAMPLE_PROMPTS,
                         SamplingParams(temperature=0.8, top_k=40, top_p=0.9, seed=0),
                         "top-k 40 / top-p 0.9, T 0.8, seed 0")


def refresh_card(text: str, out: Path, provenance: str) -> str:
    """An earlier card with its file row, quality sentence, samples and rebuild note brought
    up to date for the bundle in `out` (the training facts stay: same weights)."""
    precision, row, sentence = decode_facts(out)
    text = re.sub(r"tags: \[gpt-neo, onnx, \w+,", f"tags: [gpt-neo, onnx, {precision},", text)
    text = re.sub(r"^\| file \|.*\|$", lambda _: f"| file | {row} |", text, flags=re.M)
    text = re.sub(r"^\w+ against fp32 on the first .*? %\.$", lambda _: f"{sentence}\n\n{provenance}",
                  text, count=1, flags=re.M | re.S)
    text = re.sub(r"(## What its text looks like\n\n).*?(\n\nHonestly:)",
                  lambda m: m.group(1) + _samples(out) + m.group(2), text, flags=re.S)
    return re.sub(r"\(tokenizer → .*?\)\.", lambda _: REBUILD_NOTE, text, flags=re.S)


def decode_facts(out: Path) -> tuple[str, str, str]:
    """(precision, the card's `file` row, its quality sentence) for the bundled decode graph."""
    manifest = json.loads((out / "decode.json").read_text())
    default = manifest["default"]
    name = manifest["files"][default]
    bits = {"int4": "4-bit", "int8": "8-bit"}.get(default)
    weights = (f"{bits} MatMulNBits weights, block {manifest['block_sizes'][default]}, the tied "
               "lm_head too; embeddings fp32" if bits else "fp32 weights")
    cache = ("a cache updated in place (local layers keep their window only)"
             if manifest.get("window_cache") else "a cache updated in place")
    row = (f"`{name}`, {(out / name).stat().st_size / 2**20:.1f} MiB ({weights}): GPT-Neo decode "
           f"graph with GroupQueryAttention on {cache}, listed in `decode.json`")
    quality = manifest["gate"]["quality"].get(default) if manifest.get("gate") else None
    if not quality:
        return default, row, "The bundled graph is the fp32 one: no quantization."
    sentence = (f"{default} against fp32 on the first {quality['tokens']:,} tokens of the test "
                f"abstracts (`python -m export` gate): perplexity {quality['ppl_reference']:.2f} → "
                f"{quality['ppl']:.2f} ({quality['ppl_increase'] * 100:+.2f} %), top-1 agreement "
                f"{quality['agreement'] * 100:.1f} %.")
    return default, row, sentence


def app_examples() -> list[str]:
    """The example prompts of the app (read from demo/ui.py's source: importing it loads Gradio)."""
    import ast

    tree = ast.parse((REPO / "demo" / "ui.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "EXAMPLES" for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise ValueError("demo/ui.py has no EXAMPLES list")


def continuations(out: Path, prompts, sampled, label: str, tokens: int = 60) -> str:
    """Greedy and `sampled` continuations of `prompts` by the bundled model, as card lines."""
    from generation import Engine, SamplingParams

    engine = Engine.load(out)
    blocks = []
    for prompt in prompts:
        greedy, other = engine.generate(prompt, [SamplingParams(), sampled], tokens)
        blocks.append(f"- **{prompt}** …\n  - greedy: {greedy.text.strip()!r}\n"
                      f"  - {label}: {other.text.strip()!r}")
    return "\n".join(blocks)


def quality_table(bpb: dict) -> str:
    """Bits per byte / perplexity per split and precision; the bundled graph in bold."""
    rows = ["| graph | validation bits/byte | validation ppl | test bits/byte | test ppl |",
            "|---|---|---|---|---|"]
    by = {(r["split"], r["precision"]): r for r in bpb["results"]}
    for precision in dict.fromkeys(r["precision"] for r in bpb["results"]):
        v, t = by[("validation", precision)], by[("test", precision)]
        cells = [f"{v['bits_per_byte']:.3f}", f"{v['perplexity']:.1f}", f"{t['bits_per_byte']:.3f}",
                 f"{t['perplexity']:.1f}"]
        name = precision + (" (bundled)" if precision == bpb["default"] else "")
        if precision == bpb["default"]:
            cells, name = [f"**{c}**" for c in cells], f"**{name}**"
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def write_card(work: Path, out: Path, history: dict | None = None, command: str | None = None) -> None:
    """Write out/README.md from work/{model,model2}/metrics.json, work/bpb.json and the export.

    history: {"model", "tokens_seen", "minutes"} of the model that training continued, if any.
    command: the build command that trained it (default: the plain one).
    """
    from generation import SamplingParams

    samples = continuations(out, app_examples(), SamplingParams(temperature=0.8, top_p=0.9, seed=0),
                            "top-p 0.9, temperature 0.8, seed 0")
    command = command or ("python scripts/build_demo_model.py --data "
                          "../shared/data/arxiv-cs-abstracts.jsonl.gz --work /tmp/demo_build")
    stages = [json.loads((work / s / "metrics.json").read_text())
              for s in ("model", "model2") if (work / s / "metrics.json").is_file()]
    metrics = stages[-1]
    config = json.loads((out / "config.json").read_text())
    bpb = json.loads((work / "bpb.json").read_text())
    tokens = sum(m["tokens_seen"] for m in stages)
    train_tokens = metrics["data"]["blocks"]["train"] * metrics["data"].get("block_size", 512)
    steps = " + ".join(f"{m['train_steps']:,}" for m in stages)
    minutes = sum(m["wall_time_s"] for m in stages) / 60
    hw = metrics["hardware"]
    cfg = json.loads((work / "model" / "finetune_config.json").read_text())
    start = (f"continued (`--init-from`) from the first demo model, which had seen "
             f"{history['tokens_seen']:,} tokens in {history['minutes']:.0f} min; its weights were "
             f"recovered from the int8 file it shipped as (`scripts/build_demo_model.py --help` says "
             f"how)" if history
             else "from scratch (`python -m finetune --from-scratch`)")
    total = tokens + (history["tokens_seen"] if history else 0)
    precision, file_row, quality_sentence = decode_facts(out)
    params = metrics.get("parameters") or 0
    blocks = metrics["data"]["blocks"]
    default = {(r["split"], r["precision"]): r for r in bpb["results"]}
    test_bpb = default[("test", bpb["default"])]["bits_per_byte"]
    text = f"""---
license: apache-2.0
pipeline_tag: text-generation
language: en
tags: [gpt-neo, onnx, {precision}, demo, scientific-abstracts]
---

# neo-xscience demo model (small, trained on arXiv abstracts)

A **small GPT-Neo** trained by this project's own pipeline, bundled with the repo so that
`python app.py` serves a working demo offline. It is a stand-in: the project's intended model is
**GPT-Neo-125M fine-tuned on Multi-XScience** with `python -m finetune` and exported with
`python -m export`; neither those weights nor the dataset can be downloaded where this one was built.

## What it is

| | |
|---|---|
| architecture | GPT-Neo: {config['num_layers']} layers (alternating global / local attention, window {config['window_size']}), hidden {config['hidden_size']}, {config['num_heads']} heads, MLP {config['intermediate_size']}, {config['max_position_embeddings']} positions, tied embeddings |
| parameters | {params:,} |
| tokenizer | byte-level BPE, {config['vocab_size']:,} tokens, trained on the training split (**not** GPT-2's 50,257-token vocabulary: on a 2-core CPU the small vocabulary trains ~7x faster, so the model sees far more text in the same time) |
| file | {file_row} |
| data | all {blocks['train'] + blocks['validation'] + blocks['test']:,} blocks of {metrics['data'].get('block_size', 512)} tokens from 115,349 arXiv Computer Science abstracts (2007-2017, arXiv's CC0 metadata), split by a hash of the text: {blocks['train']:,} / {blocks['validation']:,} / {blocks['test']:,} blocks (train / validation / test; `python -m finetune` evaluates on 200 abstracts of each held-out split) |
| training | {start}; {steps} optimizer steps of {cfg['batch_size']} x {cfg['block_size']} tokens, cosine schedule with peak LR {cfg['learning_rate']:g}, **{tokens:,} tokens seen** in this run ({tokens / train_tokens:.2f} epochs; {total:,} tokens in all), {minutes:.0f} min on {hw['processes']} x {hw['device_name']} ({hw['precision']}{', torch.compile' if cfg.get('torch_compile') else ''}) |

## Results (held out)

**Bits per byte** on abstracts never trained on: each abstract scored alone through
`Engine.score` (first token conditioned on EOS), -Σ log2 p over its tokens / its UTF-8 bytes,
averaged over {default[('test', bpb['default'])]['texts']} abstracts per split (`python scripts/bits_per_byte.py`). Bits per byte do not depend on the
tokenizer; perplexity is per token of this model's own {config['vocab_size']:,}-token BPE (not comparable with
GPT-2-vocabulary perplexities).

{quality_table(bpb)}

{quality_sentence}

## What its text looks like

The app's six example prompts, 60 new tokens:

{samples}

Honestly: at {test_bpb:.2f} bits per byte this {params / 1e6:.1f}M-parameter model writes the vocabulary and
phrasing of CS abstracts, but sentences drift, repeat and say nothing true, and greedy decoding
tends to loop (which the demo's side-by-side view shows well). It is there to show the decoding
strategies side by side, not to write abstracts. Positions past {cfg['block_size']} were never trained.

## Rebuild

```bash
{command}
```

(tokenizer → `python -m finetune` → `python -m export` → bits per byte → this folder: `decode.json`
and its default decode graph). See the script's `--help` for the CPU and GPU options.
"""
    (out / "README.md").write_text(text)
