"""Model, TrainingArguments and the Trainer: the project owns data, metrics, speed switches."""

from __future__ import annotations

import math
import os
import platform
from pathlib import Path

import numpy as np
import torch
from transformers import (
    AutoModelForCausalLM,
    GPTNeoConfig,
    GPTNeoForCausalLM,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    default_data_collator,
)

from finetune import attention
from finetune.config import ConfigError, FinetuneConfig, TrainingDiverged, scratch_config_fields
from finetune.defaults import training_arguments_kwargs
from finetune.speed import SpeedCallback, flops_per_token, peak_flops
from finetune.tokenize_cache import first_line


class BlockDataset(torch.utils.data.Dataset):
    """Packed token blocks as causal-LM examples (labels = inputs; the model shifts them)."""

    def __init__(self, blocks: np.ndarray):
        self.blocks = torch.from_numpy(np.ascontiguousarray(blocks, dtype=np.int64))

    def __len__(self) -> int:
        return self.blocks.shape[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.blocks[i], "labels": self.blocks[i]}


def build_model(cfg: FinetuneConfig, tokenizer):
    """Load `--model`, or build a fresh GPT-Neo from `--from-scratch` sized to the tokenizer.

    Raises:
        ConfigError: the from-scratch fields are not a valid GPTNeoConfig.
    """
    eos = tokenizer.eos_token_id
    attention.register()
    attn = cfg.speed().attn_implementation
    if cfg.from_scratch:
        fields = scratch_config_fields(cfg.from_scratch)
        fields.update(vocab_size=len(tokenizer), bos_token_id=eos, eos_token_id=eos, use_cache=True,
                      attn_implementation=attn)
        try:
            config = GPTNeoConfig(**fields)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"--from-scratch {cfg.from_scratch}: {err}") from err
        torch.manual_seed(cfg.seed)
        model = GPTNeoForCausalLM(config)
    else:
        try:
            model = AutoModelForCausalLM.from_pretrained(cfg.model, attn_implementation=attn)
        except OSError as err:
            raise ConfigError(f"--model {cfg.model}: cannot load ({first_line(err)})") from err
        except ValueError as err:
            if "attention" not in str(err):  # only "does not support ... attention" is ours
                raise
            raise ConfigError(f"--attn-implementation {attn}: {first_line(err)}") from err
        if model.config.max_position_embeddings < cfg.block_size:
            raise ConfigError(f"--block-size {cfg.block_size} exceeds {cfg.model}'s "
                              f"max_position_embeddings ({model.config.max_position_embeddings})")
    model.config.use_cache = True  # the saved config serves generation (KV cache on)
    if tokenizer.pad_token is None:  # GPT-2 style: pad with EOS (batched generation needs one)
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = model.generation_config.pad_token_id = tokenizer.pad_token_id
    tokenizer.model_max_length = model.config.max_position_embeddings
    return model


def tidy_for_saving(model) -> None:
    """Undo Trainer's eos-as-list rewrite of generation_config and keep the KV cache on."""
    gen = model.generation_config
    if isinstance(gen.eos_token_id, list) and len(gen.eos_token_id) == 1:
        gen.eos_token_id = gen.eos_token_id[0]
    model.config.use_cache = True


def has_accelerator() -> bool:
    """A CUDA, MPS or XPU device is there (else we train on CPU)."""
    xpu = getattr(torch, "xpu", None)
    return (torch.cuda.is_available() or torch.backends.mps.is_available()
            or bool(xpu and xpu.is_available()))


def training_arguments(cfg: FinetuneConfig) -> TrainingArguments:
    """The TrainingArguments for these options (this also sets up torch.distributed)."""
    opts = cfg.to_dict()
    return TrainingArguments(
        output_dir=cfg.output_dir,
        # Only with use_cpu does accelerate set up multi-process CPU (gloo) under torchrun.
        use_cpu=not has_accelerator(),
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=opts["eval_batch_size"],
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.lr,
        lr_scheduler_type="cosine",
        warmup_ratio=cfg.warmup_ratio,
        weight_decay=cfg.weight_decay,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        eval_strategy="steps",
        eval_steps=cfg.eval_steps,
        save_strategy="steps",
        save_steps=opts["save_steps"],
        save_total_limit=cfg.save_total_limit,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        logging_dir=os.path.join(cfg.output_dir, "runs"),
        report_to=[] if cfg.report_to == "none" else [cfg.report_to],
        **training_arguments_kwargs(cfg.speed()),  # precision, optimizer, compile, loader
        seed=cfg.seed,
        include_num_input_tokens_seen=True,
        # Trainer would log the window's mean in place of a NaN/inf step loss; we want to see it.
        logging_nan_inf_filter=False,
        ddp_find_unused_parameters=False,
        save_safetensors=True,
    )


def make_trainer(cfg: FinetuneConfig, args: TrainingArguments, model, tokenizer,
                 blocks: dict[str, np.ndarray], callbacks=()) -> Trainer:
    """A Trainer with the speed callback first, so the printed and TensorBoard logs carry it."""
    device_name = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    speed = SpeedCallback(flops_per_token(model, cfg.block_size),
                          peak_flops(device_name, args.bf16, cfg.peak_tflops), args.world_size)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=BlockDataset(blocks["train"]),
        eval_dataset=BlockDataset(blocks["validation"]),
        data_collator=default_data_collator,
        processing_class=tokenizer,
        callbacks=[FiniteLossGuard(), *callbacks],
    )
    # Callbacks run in order and Trainer's printer/TensorBoard callbacks come first by
    # default; ours must update the log dict before they read it.
    trainer.callback_handler.callbacks.insert(0, speed)
    return trainer


class FiniteLossGuard(TrainerCallback):
    """Stops the run at the first logged NaN/inf train or validation loss.

    Raises:
        TrainingDiverged: from `on_log`, with the step and a hint.
    """

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in ("loss", "eval_loss"):
            value = (logs or {}).get(key)
            if value is not None and not math.isfinite(value):
                raise TrainingDiverged(
                    f"training diverged: {key} is {value} at step {state.global_step}; no model "
                    "was written (try a lower --learning-rate)")


def check_finite(perplexities: dict[str, float]) -> None:
    """Refuse a finished model whose validation or test loss is NaN or infinite.

    Raises:
        TrainingDiverged: naming the split.
    """
    for split in ("validation", "test"):
        loss = perplexities[f"{split}_loss"]
        if not math.isfinite(loss):
            raise TrainingDiverged(f"training diverged: the {split} loss of the trained model is "
                                   f"{loss}; no model was written (try a lower --learning-rate)")


def evaluate_perplexity(trainer: Trainer, blocks: dict[str, np.ndarray]) -> dict[str, float]:
    """Loss and perplexity on validation and test (all processes must call this)."""
    out = {}
    for split, prefix in (("validation", "eval"), ("test", "test")):
        metrics = trainer.evaluate(BlockDataset(blocks[split]), metric_key_prefix=prefix)
        loss = metrics[f"{prefix}_loss"]
        out[f"{split}_loss"] = round(loss, 4)
        out[f"{split}_perplexity"] = round(math.exp(min(loss, 50.0)), 3)
    return out


def hardware_info(args: TrainingArguments) -> dict:
    """What ran the job, for metrics.json and the model card."""
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else _cpu_name()
    return {
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "device_name": name,
        "processes": args.world_size,
        "cpu_count": os.cpu_count(),
        "precision": "bf16" if args.bf16 else "fp32",
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "cpu"
