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

from finetune.config import ConfigError, FinetuneConfig, TrainingDiverged, validate
from finetune.data import DataError
from finetune.finish import report, write_final
from finetune.outdir import (
    check_output_dir,
    clear_earlier_run,
    last_complete_checkpoint,
    path_issues,
    write_json_atomic,
)
from rundir import DirectoryLock, LockedError, disk_full, disk_full_message

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
    """Every option and path problem in one error (the output directory's content is checked
    later, by `check_output_dir`, once the lock is held).

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


def claim_output_dir(cfg: FinetuneConfig) -> DirectoryLock | None:
    """Lock --output-dir for this run (on rank 0; the other ranks write nothing of their own),
    then check that its content fits the options.

    Returns:
        The held lock (release it when the run ends), or None on other ranks.

    Raises:
        LockedError: another live run holds the directory.
        ConfigError: the directory's content does not fit the options.
    """
    lock = DirectoryLock(cfg.output_dir, what="finetune run") if is_main_process() else None
    if lock is not None:
        lock.acquire()
    try:
        check_output_dir(cfg)
    except ConfigError:
        if lock is not None:
            lock.release()
        raise
    return lock


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (2 for user errors)."""
    cfg = parse_args(argv)
    try:
        check_options(cfg)
        lock = claim_output_dir(cfg)  # before any work: a second run is refused at once
    except (ConfigError, LockedError) as err:
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
    except Exception as err:
        if not disk_full(err):
            raise
        print(f"error: {disk_full_message(_written_path(err, cfg), 'the finetune run')}; what "
              "was written before stays (complete checkpoints can be continued with --resume)",
              file=sys.stderr)
        return 2
    finally:
        if lock is not None:
            lock.release()
    return 0


def _written_path(err: BaseException, cfg: FinetuneConfig) -> str:
    """Where a full disk struck: the file an OSError names (the cache, say), else --output-dir."""
    while err is not None:
        if isinstance(err, OSError) and err.filename:
            return str(err.filename)
        err = err.__cause__ or err.__context__
    return cfg.output_dir


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
    metrics = write_final(cfg, trainer, result, before, after, splits, blocks, start,
                          tokens_at_start)
    if metrics is not None:
        report(cfg, metrics, before, after, log)
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
        write_json_atomic(path, before)  # --resume reads it back: never half a file
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
