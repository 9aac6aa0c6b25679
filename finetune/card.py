"""What a finished run leaves beside the weights: metrics.json, loss.png, README.md."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

MXS_DATASET = "yaolu/multi_x_science_sum"


def write_metrics(output_dir: str | Path, metrics: dict) -> Path:
    """Write `metrics.json` and return its path."""
    path = Path(output_dir) / "metrics.json"
    path.write_text(json.dumps(metrics, indent=2) + "\n")
    return path


def plot_loss(log_history: list[dict], path: str | Path) -> Path:
    """Train and eval loss against the optimizer step, saved as a PNG (matplotlib Agg).

    Args:
        log_history: Trainer's `state.log_history`.
        path: where the PNG goes.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e]
    evals = sorted({e["step"]: e["eval_loss"] for e in log_history if "eval_loss" in e}.items())
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", linewidth=1)
    if evals:
        ax.plot(*zip(*evals, strict=True), "o-", label="validation loss")
    return finish_plot(fig, ax, "cross-entropy (nats/token)", path)


def finish_plot(fig, ax, ylabel: str, path: str | Path) -> Path:
    """Label a loss-per-step plot, save it as a PNG and close it; returns the path."""
    import matplotlib.pyplot as plt

    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def card_metadata(repo_name: str, metrics: dict, *, base_model: str | None, uses_mxs: bool,
                  license: str) -> dict:
    """The Hub YAML front matter: base_model, datasets, license, pipeline_tag, tags, results."""
    meta: dict = {"license": license, "library_name": "transformers",
                  "pipeline_tag": "text-generation"}
    if base_model:
        meta["base_model"] = base_model
    if uses_mxs:
        meta["datasets"] = [MXS_DATASET]
    meta["tags"] = ["gpt_neo", "causal-lm", "scientific-abstracts", "text-generation"] + (
        ["multi-xscience"] if uses_mxs else [])
    after = metrics["after"]
    dataset = ({"name": "Multi-XScience", "type": MXS_DATASET} if uses_mxs
               else {"name": metrics["data"]["source"], "type": "text"})
    meta["model-index"] = [{"name": repo_name, "results": [
        {"task": {"type": "text-generation", "name": "Causal language modeling"},
         "dataset": {**dataset, "split": split},
         "metrics": [{"type": "perplexity", "value": after[f"{split}_perplexity"],
                      "name": f"{split.capitalize()} perplexity"}]}
        for split in ("validation", "test")]}]
    return meta


def model_card(repo_id: str, metrics: dict, config: dict) -> str:
    """The README.md of the model directory.

    Args:
        repo_id: the Hub repo (or a local name) that usage snippets load.
        metrics: as written to metrics.json.
        config: the resolved finetune options.

    Returns:
        Markdown with YAML front matter.
    """
    base_model = None if config["from_scratch"] else config["model"]
    uses_mxs = metrics["data"]["multi_xscience"]
    # The Hub's base_model must be a repo id; a local starting directory is named in the text.
    hub_base = base_model if base_model and not Path(base_model).exists() else None
    meta = card_metadata(repo_id.split("/")[-1], metrics, base_model=hub_base,
                         uses_mxs=uses_mxs, license=config["license"])
    before, after = metrics["before"], metrics["after"]
    start = (f"fine-tuned from [{base_model}](https://huggingface.co/{base_model})" if hub_base
             else f"fine-tuned from `{base_model}`" if base_model else f"trained from scratch (GPT-Neo architecture, preset/config `{config['from_scratch']}`)")
    data = ("the paper and cited-paper abstracts of [Multi-XScience](https://huggingface.co/datasets/"
            f"{MXS_DATASET})" if uses_mxs else f"the abstracts in `{metrics['data']['source']}`")
    hw = metrics["hardware"]
    rows = "\n".join(
        f"| {split} | {before[f'{split}_perplexity']:.2f} | {after[f'{split}_perplexity']:.2f} |"
        for split in ("validation", "test"))
    counts = metrics["data"]["blocks"]
    return f"""---
{yaml.safe_dump(meta, sort_keys=False).strip()}
---

# {repo_id.split("/")[-1]}

A GPT-Neo causal language model for scientific abstracts, {start} on {data}.
Abstracts were cleaned, deduplicated (by MAG id and normalized text), kept out of train when
they appear in validation or test, tokenized with an EOS after each, and packed into blocks of
{config["block_size"]} tokens ({counts["train"]} train, {counts["validation"]} validation,
{counts["test"]} test blocks).

## Results

| split | perplexity before | perplexity after |
| --- | --- | --- |
{rows}

{metrics["train_steps"]} optimizer steps, {metrics["tokens_seen"]:,} tokens seen, {metrics["tokens_per_s"]:,.0f} tokens/s,
{metrics["wall_time_s"]:.0f} s wall time on {hw["processes"]} x {hw["device_name"]} ({_speed(hw, config)}).
Peak learning rate {config["learning_rate"]} (cosine, {config["warmup_ratio"]:.0%} warmup), effective batch
{config["batch_size"]} x {config["gradient_accumulation_steps"]} x {hw["processes"]} blocks.
Loss curves: `loss.png`; {_tracking(config.get("report_to", "tensorboard"))}every option: `finetune_config.json`.

## Usage

With transformers:

```python
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

model = AutoModelForCausalLM.from_pretrained("{repo_id}")
tokenizer = AutoTokenizer.from_pretrained("{repo_id}")
generator = pipeline("text-generation", model="{repo_id}")
print(generator("In this paper we propose", max_new_tokens=60)[0]["generated_text"])
```

With ONNX Runtime (after `python -m export --model DIR --push-to-hub {repo_id}` put the ONNX
files in `onnx/`):

```python
from optimum.onnxruntime import ORTModelForCausalLM

model = ORTModelForCausalLM.from_pretrained("{repo_id}", subfolder="onnx")
```

In this project's demo app:

```bash
MODEL_ID={repo_id} python app.py
```

{_space_line(repo_id, config.get("space_id"))}

## Limitations

Trained only on abstracts: it writes abstract-like text with no regard for truth; citations,
numbers and claims it produces are invented.
"""


def _speed(hardware: dict, config: dict) -> str:
    """Precision, attention and compilation, as the card states them."""
    compiled = ", torch.compile" if config.get("torch_compile") else ""
    return f"{hardware['precision']}, {config.get('attn_implementation', 'eager')} attention{compiled}"


def _tracking(report_to: str) -> str:
    """Where the training curves went besides loss.png (--report-to)."""
    return {"tensorboard": "TensorBoard logs: `runs/`; ",
            "wandb": "training curves: the run's Weights & Biases page; "}.get(report_to, "")


def _space_line(repo_id: str, space_id: str | None) -> str:
    """The model card's pointer to the hosted demo."""
    if space_id:
        return (f"Try it in the browser: [{space_id}](https://huggingface.co/spaces/{space_id}) "
                "(greedy, sampling and top-k/top-p decoding side by side).")
    return ("Host the demo as a Space with `python -m space deploy --space-id USER/NAME "
            f"--model {repo_id}`.")


def write_card(output_dir: str | Path, repo_id: str, metrics: dict, config: dict) -> Path:
    """Write README.md into the model directory and return its path."""
    path = Path(output_dir) / "README.md"
    path.write_text(model_card(repo_id, metrics, config))
    return path
