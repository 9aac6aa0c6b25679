"""`python -m finetune`: data in → a trained Hugging Face model directory out."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import typing
from pathlib import Path

from finetune.config import MULTI_XSCIENCE, ConfigError, FinetuneConfig, TrainingDiverged, validate
from finetune.data import DataError
from finetune.outdir import (
    check_output_dir,
    clear_earlier_run,
    last_complete_checkpoint,
    path_issues,
)

DESCRIPTION = """Fine-tune (or train from scratch) a GPT-Neo causal LM on scientific abstracts.
Writes a Hugging Face model directory: config.json, model.safetensors, generation_config.json,
tokenizer files, metrics.json, loss.png, README.md (model card), finetune_config.json,
checkpoints and TensorBoard logs (runs/). Runs unchanged under torchrun and accelerate launch."""


def build_parser() -> argparse.ArgumentParser:
    """An argparse parser with one `--kebab-case` flag per FinetuneConfig field and its help."""
    parser = argparse.ArgumentParser(prog="python -m finetune", description=DESCRIPTION,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    hints = typing.get_type_hints(FinetuneConfig)
    for f in dataclasses.fields(FinetuneConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = None if required else (
            f.default if f.default is not dataclasses.MISSING else f.default_factory())
        help_text = f.metadata["help"]
        if kind is bool:
            parser.add_argument(flag, action="store_true", help=help_text)
            continue
        if kind == bool | None:  # unset (None) leaves the choice to finetune/defaults.py
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                                help=help_text)
            continue
        base = next((t for t in typing.get_args(kind) if t is not type(None)), kind)
        parser.add_argument(flag, type=base, default=default, required=required,
                            choices=f.metadata.get("choices"), metavar=f.name.upper(), help=help_text)
    return parser


def parse_args(argv: list[str] | None = None) -> FinetuneConfig:
    """Parse the command line (argparse exits 2 on unknown or malformed flags).

    `--learning-rate -1e-3` works like `--learning-rate=-1e-3`: argparse alone would take
    "-1e-3" for a flag (it only knows plain negative numbers like -1 or -.5).
    """
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    valued = {a.option_strings[0] for a in parser._actions if a.type in (int, float)}
    joined: list[str] = []
    for arg in argv:
        if joined and joined[-1] in valued and _is_number(arg):
            joined[-1] = f"{joined[-1]}={arg}"
        else:
            joined.append(arg)
    return FinetuneConfig(**vars(parser.parse_args(joined)))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def is_main_process() -> bool:
    """Rank 0 under torchrun / accelerate launch (both set RANK), or a plain run."""
    return int(os.environ.get("RANK", "0")) == 0


def check_options(cfg: FinetuneConfig) -> None:
    """Every option and path problem in one error; then whether --output-dir fits the run.

    Raises:
        ConfigError: one problem per line.
    """
    issues = path_issues(cfg)
    try:
        validate(cfg)
    except ConfigError as err:
        issues = str(err).splitlines() + issues
    if issues:
        raise ConfigError("\n".join(issues))
    check_output_dir(cfg)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (2 for user errors)."""
    cfg = parse_args(argv)
    try:
        check_options(cfg)
    except ConfigError as err:
        print("\n".join(f"error: {line}" for line in str(err).splitlines()), file=sys.stderr)
        return 2
    log = print if is_main_process() else (lambda _msg: None)
    log("finetune: resolved config\n" + json.dumps(cfg.to_dict(), indent=2))
    try:
        run(cfg, log)
    except (ConfigError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except TrainingDiverged as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def run(cfg: FinetuneConfig, log=print, callbacks=()) -> dict | None:
    """Prepare data, train, evaluate, and (on rank 0) write metrics, plot, card and push.

    Args:
        cfg: validated options.
        log: where progress lines go.
        callbacks: extra TrainerCallbacks (tests use one to stop a run early).

    Returns:
        The metrics written to metrics.json (None on processes other than rank 0).

    Raises:
        ConfigError, DataError: user errors found while loading.
    """
    from finetune.train import (
        build_model,
        check_finite,
        make_trainer,
        tidy_for_saving,
        training_arguments,
    )

    start = time.time()
    args = training_arguments(cfg)
    out = Path(cfg.output_dir)
    if args.process_index == 0:
        clear_earlier_run(cfg, log)
        out.mkdir(parents=True, exist_ok=True)
        (out / "finetune_config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    tokenizer, splits, blocks = _prepare_data(cfg, args, log)
    model = build_model(cfg, tokenizer)
    trainer = make_trainer(cfg, args, model, tokenizer, blocks, callbacks)
    log(f"finetune: {model.num_parameters():,} parameters, {args.world_size} process(es), "
        f"{'bf16' if args.bf16 else 'fp32'}, optimizer {getattr(args.optim, 'value', args.optim)}, effective batch "
        f"{cfg.batch_size * cfg.gradient_accumulation_steps * args.world_size} x {cfg.block_size} tokens")
    before = _baseline(cfg, trainer, blocks, args.process_index == 0)
    checkpoint = _resume_point(cfg, log)
    tokens_at_start = _tokens_in(checkpoint)
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    after = _perplexities(trainer, blocks)
    check_finite(after)  # before save_model: a diverged model is never written as the result
    tidy_for_saving(trainer.model)
    trainer.save_model(str(out))  # the best checkpoint's weights (load_best_model_at_end)
    trainer.save_state()
    metrics = None
    if trainer.is_world_process_zero():
        metrics = _finish(cfg, trainer, result, before, after, splits, blocks, start,
                          tokens_at_start, log)
    # Other ranks wait for rank 0's card and push, then everyone leaves the process group
    # (a gloo rank exiting while a peer still works aborts with "terminate called ...").
    trainer.accelerator.wait_for_everyone()
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    return metrics


def _prepare_data(cfg, args, log):
    """(tokenizer, abstracts per split, token blocks per split)."""
    from finetune.sources import load_splits
    from finetune.tokenize_cache import load_tokenizer, tokenize_splits

    # Rank 0 downloads and tokenizes first; the others then read its cache.
    with args.main_process_first(desc="data preparation"):
        tokenizer = load_tokenizer(cfg.tokenizer or cfg.model)
        splits = load_splits(cfg.data, cache_dir=cfg.cache_dir, text_field=cfg.text_field,
                             min_words=cfg.min_words, max_words=cfg.max_words,
                             val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
                             max_train_samples=cfg.max_train_samples,
                             max_eval_samples=cfg.max_eval_samples, log=log)
        blocks = tokenize_splits(splits, tokenizer, cfg.block_size, cfg.cache_dir, log=log)
    return tokenizer, splits, blocks


def _perplexities(trainer, blocks):
    from finetune.train import evaluate_perplexity

    return evaluate_perplexity(trainer, blocks)


def _baseline(cfg, trainer, blocks, write: bool) -> dict:
    """The starting model's perplexities; a resumed run reuses the first run's."""
    path = Path(cfg.output_dir) / "baseline_metrics.json"
    if cfg.resume and path.is_file():
        return json.loads(path.read_text())
    before = _perplexities(trainer, blocks)
    if write:
        path.write_text(json.dumps(before, indent=2) + "\n")
    return before


def _resume_point(cfg, log) -> Path | None:
    """The checkpoint --resume continues from: the newest complete one (checked in main)."""
    if not cfg.resume:
        return None
    checkpoint, skipped = last_complete_checkpoint(cfg.output_dir)
    for path in skipped:
        log(f"finetune: --resume: skipping {path.name}, which is incomplete (a run cut short "
            "while saving it)")
    log(f"finetune: resuming from {checkpoint.name}")
    return checkpoint


def _tokens_in(checkpoint: Path | None) -> int:
    if checkpoint is None:
        return 0
    state = checkpoint / "trainer_state.json"
    return int(json.loads(state.read_text()).get("num_input_tokens_seen", 0))


def _finish(cfg, trainer, result, before, after, splits, blocks, start, tokens_at_start, log):
    from finetune.card import plot_loss, write_card, write_metrics
    from finetune.speed import SpeedCallback
    from finetune.train import hardware_info

    speed = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, SpeedCallback))
    out = Path(cfg.output_dir)
    state = trainer.state
    runtime = result.metrics.get("train_runtime", 0.0)
    data_path = Path(cfg.data)
    metrics = {
        "before": before,
        "after": after,
        "tokens_seen": int(state.num_input_tokens_seen),
        "train_steps": state.global_step,
        "epochs": round(state.epoch or 0.0, 4),
        "train_runtime_s": round(runtime, 2),
        # Training steps only (SpeedCallback); the next one also counts in-training evaluations.
        "tokens_per_s": round(speed.mean_tokens_per_s, 1),
        "tokens_per_s_incl_eval": round((state.num_input_tokens_seen - tokens_at_start) / runtime, 1)
        if runtime else 0.0,
        "wall_time_s": round(time.time() - start, 2),
        "best_checkpoint": state.best_model_checkpoint,
        "parameters": trainer.model.num_parameters(),
        "hardware": hardware_info(trainer.args),
        "speed": cfg.speed().as_dict(),  # precision, attention, optimizer, compile, loader
        "data": {
            "source": cfg.data if cfg.data == MULTI_XSCIENCE else data_path.name,
            "multi_xscience": cfg.data == MULTI_XSCIENCE or data_path.is_dir()
            or data_path.name.endswith((".json", ".json.gz")),
            "abstracts": {k: len(v) for k, v in splits.items()},
            "blocks": {k: int(v.shape[0]) for k, v in blocks.items()},
            "block_size": cfg.block_size,
        },
    }
    write_metrics(out, metrics)
    # train() starts a fresh log history, so the starting model's loss is added as step 0.
    plot_loss([{"step": 0, "eval_loss": before["validation_loss"]}, *state.log_history],
              out / "loss.png")
    write_card(out, cfg.push_to_hub or str(out), metrics, cfg.to_dict())
    for split in ("validation", "test"):
        log(f"finetune: {split} perplexity {before[f'{split}_perplexity']:.2f} → "
            f"{after[f'{split}_perplexity']:.2f}")
    log(f"finetune: {metrics['tokens_seen']:,} tokens seen, {metrics['tokens_per_s']:,.0f} "
        f"tokens/s, {metrics['wall_time_s']:.0f} s wall; model written to {out}")
    if cfg.push_to_hub:
        from finetune.hub import push_to_hub

        log(f"finetune: pushed to {push_to_hub(out, cfg.push_to_hub, cfg.private)}")
    return metrics
