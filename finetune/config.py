"""Options of `python -m finetune`, their validation, and the `--from-scratch` presets.

The options are one dataclass parsed by `HfArgumentParser` (so `--block-size` and
`--block_size` both work and `--help` shows each field's help). We build
`TrainingArguments` from it ourselves instead of exposing all ~150 of Trainer's flags:
the CLI stays small and every option it has is one this project tests.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

from finetune.defaults import ATTENTION_CHOICES, SpeedChoices, speed_choices, training_device

MULTI_XSCIENCE = "multi-xscience"
DEFAULT_MODEL = "EleutherAI/gpt-neo-125m"
FINETUNE_LR = 5e-5
SCRATCH_LR = 6e-4

# GPT-Neo presets for --from-scratch. The vocabulary size always follows the tokenizer.
PRESETS: dict[str, dict] = {
    # The real EleutherAI/gpt-neo-125m architecture.
    "gpt-neo-125m": dict(
        hidden_size=768, num_layers=12, num_heads=12, attention_types=[[["global", "local"], 6]],
        window_size=256, max_position_embeddings=2048, intermediate_size=None,
    ),
    # A few-MB model for smoke runs and the bundled demo: still global + local attention.
    "tiny": dict(
        hidden_size=128, num_layers=4, num_heads=4, attention_types=[[["global", "local"], 2]],
        window_size=64, max_position_embeddings=512, intermediate_size=512,
    ),
}


REPORT_TO = ("tensorboard", "wandb", "none")
PRECISIONS = ("auto", "bf16", "fp32")


class ConfigError(ValueError):
    """A user error in the options; the message lists every problem, one per line."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: the run stops and writes no model as its result."""


def default_cache_dir() -> str:
    """`$NEO_CACHE_DIR`, else `$XDG_CACHE_HOME/neo-xscience`, else `~/.cache/neo-xscience`."""
    if os.environ.get("NEO_CACHE_DIR"):
        return os.environ["NEO_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "neo-xscience")


@dataclass
class FinetuneConfig:
    """Every option of `python -m finetune`."""

    output_dir: str = field(metadata={"help": "Where the trained model directory is written "
                                              "(checkpoints, TensorBoard logs, card, metrics)."})
    model: str = field(default=DEFAULT_MODEL, metadata={
        "help": "Starting model: a Hub id or a local model directory. With --from-scratch, only "
                "its tokenizer is used (unless --tokenizer is given)."})
    data: str = field(default=MULTI_XSCIENCE, metadata={
        "help": "'multi-xscience' (download the release files into --cache-dir), a directory with "
                "the release files {train,val,test}.json[.gz], one release file .json[.gz], "
                "a .jsonl[.gz] of records (see --text-field), or a .txt with one abstract per line."})
    tokenizer: str | None = field(default=None, metadata={
        "help": "Tokenizer: a Hub id or a directory (a saved tokenizer, or GPT-2 style "
                "vocab.json + merges.txt). Default: the --model's tokenizer."})
    from_scratch: str | None = field(default=None, metadata={
        "help": f"Train fresh weights instead of loading --model: a preset ({', '.join(PRESETS)}) "
                "or a JSON file of GPTNeoConfig fields. The vocab size follows the tokenizer."})
    block_size: int = field(default=512, metadata={
        "help": "Tokens per training example; abstracts (each ending in EOS) are packed into blocks."})
    epochs: float = field(default=1.0, metadata={"help": "Training epochs (ignored if --max-steps > 0)."})
    max_steps: int = field(default=-1, metadata={
        "help": "Stop after this many optimizer steps (overrides --epochs); -1 = use --epochs."})
    batch_size: int = field(default=8, metadata={"help": "Blocks per device per forward pass."})
    eval_batch_size: int | None = field(default=None, metadata={
        "help": "Blocks per device for evaluation (default: --batch-size)."})
    gradient_accumulation_steps: int = field(default=4, metadata={
        "help": "Forward passes per optimizer step. Effective batch = batch-size x this x devices."})
    learning_rate: float | None = field(default=None, metadata={
        "help": f"Peak learning rate of the cosine schedule (default {FINETUNE_LR} when "
                f"fine-tuning, {SCRATCH_LR} with --from-scratch)."})
    warmup_ratio: float = field(default=0.05, metadata={
        "help": "Fraction of the steps spent warming the learning rate up linearly."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    eval_steps: int = field(default=200, metadata={"help": "Evaluate on validation every N steps."})
    save_steps: int | None = field(default=None, metadata={
        "help": "Save a checkpoint every N steps; a multiple of --eval-steps (default: --eval-steps). "
                "The best checkpoint (lowest validation loss) is the one kept as the result."})
    save_total_limit: int = field(default=2, metadata={"help": "Checkpoints kept on disk (best + latest)."})
    logging_steps: int = field(default=10, metadata={
        "help": "Log loss, learning rate, tokens/s and MFU every N steps."})
    seed: int = field(default=42, metadata={"help": "Seed for weights init, shuffling and dropout."})
    resume: bool = field(default=False, metadata={
        "help": "Continue from the last complete checkpoint in --output-dir (same options as the "
                "first run); a checkpoint cut short by a crash is skipped."})
    overwrite: bool = field(default=False, metadata={
        "help": "Start afresh in an --output-dir that holds a finished model or checkpoints: the "
                "earlier run's checkpoints and result files are deleted first."})
    torch_compile: bool | None = field(default=None, metadata={
        "help": "Compile the model with torch.compile (--no-torch-compile: don't). Default: on "
                "(with CUDA, and on a CPU where a C++ compiler is on PATH: 1.3x faster for "
                "GPT-Neo-125M on a 2-core EPYC; the rule in finetune/defaults.py)."})
    attn_implementation: str = field(default="auto", metadata={
        "help": "GPT-Neo attention: eager (transformers' own) or sdpa (torch's "
                "scaled_dot_product_attention, equal to eager; finetune/attention.py). auto = "
                "the rule in finetune/defaults.py (sdpa; eager on a CPU without torch.compile, "
                "where it measured faster).",
        "choices": ATTENTION_CHOICES})
    precision: str = field(default="auto", metadata={
        "help": "Training precision: bf16 mixed precision (fp32 master weights) or fp32. auto = bf16 "
                "on a GPU that supports it, else fp32. bf16 on a CPU with AMX / AVX-512 BF16 trains "
                "a small model ~1.9x faster together with --torch-compile (6,500 vs 3,400 tokens/s "
                "for the demo model on a 2-core Xeon); on other CPUs it can be slower.",
        "choices": PRECISIONS})
    text_field: str = field(default="abstract", metadata={
        "help": "Field that holds the text in .jsonl records."})
    cache_dir: str = field(default_factory=default_cache_dir, metadata={
        "help": "Where downloads and token arrays are cached ($NEO_CACHE_DIR, default "
                "~/.cache/neo-xscience)."})
    max_train_samples: int | None = field(default=None, metadata={
        "help": "Use at most this many training abstracts (for quick runs)."})
    max_eval_samples: int | None = field(default=None, metadata={
        "help": "Use at most this many validation and this many test abstracts."})
    min_words: int = field(default=8, metadata={"help": "Drop abstracts shorter than this many words."})
    max_words: int = field(default=1000, metadata={
        "help": "Drop abstracts longer than this many words (a stray multi-megabyte line would "
                "otherwise dominate training); the report counts them."})
    val_fraction: float = field(default=0.01, metadata={
        "help": "Share of a single file's abstracts hashed into validation (release files keep "
                "their own split)."})
    test_fraction: float = field(default=0.01, metadata={
        "help": "Share of a single file's abstracts hashed into test."})
    peak_tflops: float | None = field(default=None, metadata={
        "help": "Peak TFLOP/s of one device for the MFU estimate (default: known GPUs only; on "
                "CPU, MFU is omitted unless given)."})
    push_to_hub: str | None = field(default=None, metadata={
        "help": "Upload the result to this Hub model repo (owner/name) at the end; the token comes "
                "from HF_TOKEN or `huggingface-cli login`."})
    private: bool = field(default=False, metadata={"help": "Create the --push-to-hub repo private."})
    space_id: str | None = field(default=None, metadata={
        "help": "The Hugging Face Space (owner/name) that serves this model; the model card links "
                "to it (deploy one with `python -m space deploy`)."})
    license: str = field(default="mit", metadata={"help": "License written into the model card."})
    report_to: str = field(default="tensorboard", metadata={
        "help": "Experiment tracking: tensorboard (logs in runs/), wandb, or none.",
        "choices": REPORT_TO})

    @property
    def lr(self) -> float:
        """The learning rate to use: the option, else the default for the mode."""
        if self.learning_rate is not None:
            return self.learning_rate
        return SCRATCH_LR if self.from_scratch else FINETUNE_LR

    def to_dict(self) -> dict:
        """The options plus the derived values, as written to `finetune_config.json`."""
        out = dataclasses.asdict(self)
        out["learning_rate"] = self.lr
        out["save_steps"] = self.save_steps or self.eval_steps
        out["eval_batch_size"] = self.eval_batch_size or self.batch_size
        speed = self.speed()
        out["attn_implementation"] = speed.attn_implementation
        out["torch_compile"] = speed.torch_compile
        out["speed"] = speed.as_dict()
        return out

    def speed(self) -> SpeedChoices:
        """The speed switches for this machine: the device rule plus the explicit options."""
        return speed_choices(training_device(), self.precision, self.attn_implementation,
                             self.torch_compile)


_POSITIVE = ("block_size", "batch_size", "gradient_accumulation_steps", "eval_steps",
             "save_total_limit", "logging_steps")
_REPO_ID = re.compile(r"^(?:[\w.-]+/)?[\w.-]+$")


def validate(cfg: FinetuneConfig) -> None:
    """Check every option at once.

    Args:
        cfg: the parsed options.

    Raises:
        ConfigError: listing every problem found, one per line.
    """
    issues = _float_issues(cfg)
    for name in _POSITIVE:
        if getattr(cfg, name) < 1:
            issues.append(f"--{name.replace('_', '-')} must be >= 1 (got {getattr(cfg, name)})")
    if cfg.block_size == 1:
        issues.append("--block-size must be >= 2 (a label needs a previous token)")
    for name in ("eval_batch_size", "save_steps", "max_train_samples", "max_eval_samples"):
        value = getattr(cfg, name)
        if value is not None and value < 1:
            issues.append(f"--{name.replace('_', '-')} must be >= 1 (got {value})")
    if cfg.save_steps and cfg.eval_steps >= 1 and cfg.save_steps % cfg.eval_steps:
        issues.append(f"--save-steps ({cfg.save_steps}) must be a multiple of --eval-steps "
                      f"({cfg.eval_steps}) so the best checkpoint can be kept")
    if cfg.max_steps == 0 or cfg.max_steps < -1:
        issues.append(f"--max-steps must be -1 or >= 1 (got {cfg.max_steps})")
    if cfg.min_words < 0:
        issues.append(f"--min-words must be >= 0 (got {cfg.min_words})")
    if cfg.max_words < max(cfg.min_words, 1):
        issues.append(f"--max-words must be >= 1 and >= --min-words (got {cfg.max_words})")
    if cfg.attn_implementation not in ATTENTION_CHOICES:
        issues.append(f"--attn-implementation must be one of {', '.join(ATTENTION_CHOICES)} "
                      f"(got {cfg.attn_implementation!r})")
    if cfg.report_to == "wandb" and importlib.util.find_spec("wandb") is None:
        issues.append("--report-to wandb needs the wandb package (pip install wandb)")
    issues += _source_issues(cfg)
    if issues:
        raise ConfigError("\n".join(issues))


def _source_issues(cfg: FinetuneConfig) -> list[str]:
    """Problems with what the run reads (data, model, tokenizer) and where it publishes."""
    issues = []
    if cfg.data != MULTI_XSCIENCE and not Path(cfg.data).exists():
        issues.append(f"--data {cfg.data}: no such file or directory")
    if cfg.from_scratch and cfg.from_scratch not in PRESETS:
        path = Path(cfg.from_scratch)
        if not path.is_file():
            issues.append(f"--from-scratch {cfg.from_scratch}: neither a preset "
                          f"({', '.join(PRESETS)}) nor a JSON file")
    if cfg.from_scratch:
        try:
            positions = scratch_config_fields(cfg.from_scratch).get("max_position_embeddings", 2048)
            if cfg.block_size > positions:
                issues.append(f"--block-size {cfg.block_size} exceeds the model's "
                              f"max_position_embeddings ({positions})")
        except ConfigError as err:
            issues.append(str(err))
    for name in ("model", "tokenizer"):
        value = getattr(cfg, name)
        if value and _looks_local(value) and not Path(value).is_dir():
            issues.append(f"--{name} {value}: no such directory")
    if cfg.space_id is not None and not _REPO_ID.match(cfg.space_id):
        issues.append(f"--space-id {cfg.space_id!r} is not a Space id like owner/name")
    if cfg.push_to_hub is not None and not _REPO_ID.match(cfg.push_to_hub):
        issues.append(f"--push-to-hub {cfg.push_to_hub!r} is not a repo id like owner/name")
    if cfg.push_to_hub is not None:
        from huggingface_hub import get_token

        if get_token() is None:
            issues.append("--push-to-hub needs a Hugging Face token: set HF_TOKEN or run "
                          "`huggingface-cli login`")
    return issues


# The allowed range of each float option, as (test, wording).
_FLOAT_RANGES = {
    "epochs": (lambda v: v > 0, "> 0"),
    "learning_rate": (lambda v: v > 0, "> 0"),
    "warmup_ratio": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "weight_decay": (lambda v: v >= 0, ">= 0"),
    "val_fraction": (lambda v: 0 < v < 0.5, "in (0, 0.5)"),
    "test_fraction": (lambda v: 0 < v < 0.5, "in (0, 0.5)"),
    "peak_tflops": (lambda v: v > 0, "> 0"),
}


def _float_issues(cfg: FinetuneConfig) -> list[str]:
    """One issue per float option that is NaN, infinite or out of its range.

    Finiteness is checked first and on its own: every comparison with NaN is False, so a
    range check alone lets NaN through to the optimizer (a silent NaN model).
    """
    hints = typing.get_type_hints(FinetuneConfig)
    issues = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if value is None or float not in (hints[f.name], *typing.get_args(hints[f.name])):
            continue
        flag = "--" + f.name.replace("_", "-")
        ok, wording = _FLOAT_RANGES[f.name]
        if not math.isfinite(value):
            issues.append(f"{flag} must be a finite number (got {value})")
        elif not ok(value) and not (f.name == "epochs" and cfg.max_steps != -1):
            issues.append(f"{flag} must be {wording} (got {value})")
    return issues


def _looks_local(name: str) -> bool:
    """A path rather than a Hub id: starts with . / ~ or exists, or has more than one slash."""
    return name.startswith((".", "/", "~")) or os.path.exists(name) or name.count("/") > 1


def scratch_config_fields(spec: str) -> dict:
    """The GPTNeoConfig fields for a `--from-scratch` preset name or JSON file.

    Args:
        spec: a key of PRESETS or the path of a JSON object of GPTNeoConfig fields.

    Returns:
        A dict of GPTNeoConfig keyword arguments (without vocab/special-token ids).

    Raises:
        ConfigError: the file is not a JSON object.
    """
    if spec in PRESETS:
        return {k: v for k, v in PRESETS[spec].items() if v is not None}
    path = Path(spec)
    if not path.is_file():
        return {}
    try:
        fields = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"--from-scratch {spec}: not JSON ({err})") from err
    if not isinstance(fields, dict):
        raise ConfigError(f"--from-scratch {spec}: expected a JSON object of GPTNeoConfig fields")
    return fields
