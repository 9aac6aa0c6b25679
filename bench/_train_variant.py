"""One variant of bench/train.py, run in its own process: build, train N steps, measure.

A fresh process per variant gives each one a clean peak-memory count (CPU: the process's
peak RSS; CUDA: `max_memory_allocated`), its own torch.compile caches and allocator.

The model is `finetune.train.build_model` (same seed: same initial weights in every
variant) and the loop is Trainer's; the speed switches come in as `SpeedChoices` and reach
TrainingArguments through `finetune.defaults.training_arguments_kwargs`, exactly as in
`python -m finetune`. Two things differ from a finetune run, for the measurement's sake:
no evaluation or checkpoints inside the timed steps, and the blocks are taken in order
(a sequential sampler), so every variant sees the same batches.
"""

from __future__ import annotations

import resource
import statistics
import tempfile
import time

import numpy as np
import torch
from torch.utils.data import SequentialSampler
from transformers import Trainer, TrainerCallback, TrainingArguments, default_data_collator

from finetune.config import FinetuneConfig
from finetune.defaults import SpeedChoices, training_arguments_kwargs
from finetune.speed import flops_per_token
from finetune.tokenize_cache import load_tokenizer
from finetune.train import BlockDataset, build_model


class InOrderTrainer(Trainer):
    """Trainer that feeds the blocks in their stored order (the same batches per variant)."""

    def _get_train_sampler(self, *args, **kwargs):
        return SequentialSampler(self.train_dataset)


class StepClock(TrainerCallback):
    """Wall time at the end of each optimizer step, after the device has finished it.

    Step k's time is end(k) - end(k-1): the forward/backward passes, the optimizer, the
    data loading of step k and the logging of step k-1, i.e. everything a run pays per step.
    """

    def __init__(self, cuda: bool):
        self.cuda = cuda
        self.ends: list[float] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self._sync()
        self.ends.append(time.perf_counter())

    def on_step_end(self, args, state, control, **kwargs):
        self._sync()
        self.ends.append(time.perf_counter())

    def _sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def step_times(self) -> list[float]:
        return [b - a for a, b in zip(self.ends, self.ends[1:], strict=False)]


def training_args(spec: dict, speed: SpeedChoices, output_dir: str) -> TrainingArguments:
    """The same hyperparameters for every variant; only the speed switches differ."""
    return TrainingArguments(
        output_dir=output_dir, use_cpu=spec["device"] == "cpu",
        per_device_train_batch_size=spec["batch_size"],
        gradient_accumulation_steps=spec["gradient_accumulation_steps"],
        learning_rate=spec["learning_rate"], lr_scheduler_type="cosine",
        warmup_steps=spec["warmup_steps"], weight_decay=0.01,
        max_steps=spec["warmup_steps"] + spec["steps"], logging_steps=1,
        eval_strategy="no", save_strategy="no", report_to=[], seed=spec["seed"],
        disable_tqdm=True, **training_arguments_kwargs(speed))


def run_variant(spec: dict) -> dict:
    """Train one variant for warm-up + measured steps and return its figures.

    Args:
        spec: as bench/train.py writes it (device, model, tokenizer, blocks, sizes, speed).

    Returns:
        JSON-ready dict: per-step times and losses, tokens/s, peak memory, FLOPs per token.
    """
    speed = SpeedChoices(**spec["speed"])
    cuda = spec["device"] == "cuda"
    tokenizer = load_tokenizer(spec["tokenizer"])
    with tempfile.TemporaryDirectory() as tmp:
        cfg = FinetuneConfig(output_dir=tmp, from_scratch=spec["model"], seed=spec["seed"],
                             block_size=spec["block_size"], precision=speed.precision,
                             attn_implementation=speed.attn_implementation)
        model = build_model(cfg, tokenizer)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        blocks = np.load(spec["blocks"])
        clock = StepClock(cuda)
        trainer = InOrderTrainer(model=model, args=training_args(spec, speed, tmp),
                                 train_dataset=BlockDataset(blocks),
                                 data_collator=default_data_collator, callbacks=[clock])
        trainer.train()
        history = trainer.state.log_history
    times = clock.step_times()[spec["warmup_steps"]:]
    tokens_per_step = spec["batch_size"] * spec["gradient_accumulation_steps"] * spec["block_size"]
    return {
        "name": spec["name"],
        "speed": speed.as_dict(),
        "attn_implementation_used": model.config._attn_implementation,
        "parameters": model.num_parameters(),
        "flops_per_token": flops_per_token(model, spec["block_size"]),
        "tokens_per_step": tokens_per_step,
        "step_times_s": [round(t, 5) for t in times],
        "step_time_s": statistics.median(times),
        "tokens_per_s": tokens_per_step * len(times) / sum(times),
        "losses": [e["loss"] for e in history if "loss" in e],
        "peak_memory_bytes": _peak_memory(cuda),
        "peak_memory_kind": "torch.cuda.max_memory_allocated" if cuda else "process peak RSS",
    }


def _peak_memory(cuda: bool) -> int:
    if cuda:
        return int(torch.cuda.max_memory_allocated())
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux: KiB
