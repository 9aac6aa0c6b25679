"""The model card of the bundled demo model, written from what the build measured."""

from __future__ import annotations

import json
from pathlib import Path

SAMPLE_PROMPTS = ("In this paper, we propose a novel method for",
                  "Deep neural networks have achieved remarkable success in")


def _samples(out: Path) -> str:
    """Continuations of the bundled int8 model, so the card shows what the demo will show."""
    from generation import Engine, SamplingParams

    engine = Engine.load(out)
    blocks = []
    for prompt in SAMPLE_PROMPTS:
        greedy, sampled = engine.generate(prompt, [
            SamplingParams(), SamplingParams(temperature=0.8, top_k=40, top_p=0.9, seed=0)], 60)
        blocks.append(f"- **{prompt}** …\n  - greedy: {greedy.text.strip()!r}\n"
                      f"  - top-k 40 / top-p 0.9, T 0.8, seed 0: {sampled.text.strip()!r}")
    return "\n".join(blocks)


def write_card(work: Path, out: Path) -> None:
    """Write out/README.md from work/model/metrics.json and work/onnx/export_report.json."""
    stages = [json.loads((work / s / "metrics.json").read_text())
              for s in ("model", "model2") if (work / s / "metrics.json").is_file()]
    metrics = stages[-1]
    report = json.loads((work / "onnx" / "export_report.json").read_text())
    config = json.loads((out / "config.json").read_text())
    before, after = stages[0]["before"], metrics["after"]
    tokens = sum(m["tokens_seen"] for m in stages)
    steps = " + ".join(f"{m['train_steps']:,}" for m in stages)
    minutes = sum(m["wall_time_s"] for m in stages) / 60
    schedule = "`python -m finetune --from-scratch`, cosine schedule with peak LR 1e-3"
    if len(stages) > 1:
        schedule += ", then `python -m finetune --model <that>` with a fresh warmup + cosine at 5e-4"
    stage_rows = "".join(
        f"| after stage {i + 1} ({m['train_steps']:,} steps) | {m['after']['validation_perplexity']:.1f} "
        f"| {m['after']['test_perplexity']:.1f} |\n" for i, m in enumerate(stages[:-1]))
    quality = (report.get("gate") or {}).get("quality", {}).get("int8", {})
    size_mib = (out / "model_int8.onnx").stat().st_size / 2**20
    params = metrics.get("parameters") or config.get("n_params") or 0
    hw = metrics["hardware"]
    blocks = metrics["data"]["blocks"]
    text = f"""---
license: apache-2.0
pipeline_tag: text-generation
language: en
tags: [gpt-neo, onnx, int8, demo, scientific-abstracts]
---

# neo-xscience demo model (small, from scratch)

A **small GPT-Neo trained from scratch** by this project's own pipeline, bundled with the repo so
that `python app.py` serves a working demo offline. It is a stand-in: the project's intended
model is **GPT-Neo-125M fine-tuned on Multi-XScience** with `python -m finetune` and exported with
`python -m export`; neither those weights nor the dataset can be downloaded where this one was built.

## What it is

| | |
|---|---|
| architecture | GPT-Neo: {config['num_layers']} layers (alternating global / local attention, window {config['window_size']}), hidden {config['hidden_size']}, {config['num_heads']} heads, MLP {config['intermediate_size']}, {config['max_position_embeddings']} positions, tied embeddings |
| parameters | {params:,} |
| tokenizer | byte-level BPE, {config['vocab_size']:,} tokens, trained on the training split (**not** GPT-2's 50,257-token vocabulary: on the 2-core CPU it was built on, the small vocabulary trains ~7x faster, so the model sees far more text in the same time) |
| file | `model_int8.onnx`, {size_mib:.1f} MiB (dynamic int8 MatMuls; the embeddings stay fp32), KV cache as inputs/outputs |
| data | 117k arXiv Computer Science abstracts (2007-2017, arXiv's CC0 metadata), split by a hash of the text: {blocks['train']:,} / {blocks['validation']:,} / {blocks['test']:,} blocks of {metrics['data'].get('block_size', 512)} tokens (train / validation / test; validation and test capped at 200 abstracts) |
| training | {schedule}, {steps} optimizer steps of 4 x 512 tokens, **{tokens:,} tokens seen** (< 1 epoch), {minutes:.0f} min on {hw['processes']} x {hw['device_name']} ({hw['precision']}), a CPU shared with other jobs |

## Results (held out)

Perplexity per token of this model's own 8,192-token BPE (not comparable with GPT-2-vocabulary
perplexities), measured by `python -m finetune` on abstracts never trained on:

| model | validation | test |
|---|---|---|
| random init | {before['validation_perplexity']:.1f} | {before['test_perplexity']:.1f} |
{stage_rows}| **final** | **{after['validation_perplexity']:.1f}** | **{after['test_perplexity']:.1f}** |

int8 against fp32 on the first {quality.get('tokens', 2032):,} tokens of the test abstracts (`python -m export` gate): perplexity
{quality.get('ppl_reference', float('nan')):.2f} → {quality.get('ppl', float('nan')):.2f}
({quality.get('ppl_increase', float('nan')) * 100:+.2f} %), top-1 agreement
{quality.get('agreement', float('nan')) * 100:.1f} %.

## What its text looks like

{_samples(out)}

Honestly: the text reads as scientific-sounding English with the vocabulary and phrasing of CS
abstracts, but it is a {params / 1e6:.1f}M-parameter model trained for {minutes:.0f} minutes on a shared CPU; sentences
drift, repeat and do not say anything true, and greedy decoding soon loops (which the demo's
side-by-side view shows well). It is there to show the decoding strategies side by
side, not to write abstracts. Positions past 512 were never trained.

## Rebuild

```bash
python scripts/build_demo_model.py --data ../shared/data/arxiv-cs-abstracts.jsonl.gz --work /tmp/demo_build
```

(tokenizer → `python -m finetune --from-scratch` → `python -m export --quantize int8` → this folder).
"""
    (out / "README.md").write_text(text)
