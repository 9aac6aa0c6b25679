"""What a finished run writes: the model, metrics.json, loss.png and the card, published whole.

Everything is written into `--output-dir/.final.partial` first and moved into place only when
all of it is there (`finetune.outdir.publish_final`), so a full disk or a kill never leaves a
model directory that a loader would take for complete.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from finetune.config import MULTI_XSCIENCE, FinetuneConfig
from finetune.outdir import FINAL_STAGE, final_stage, publish_final


def write_final(cfg: FinetuneConfig, trainer, result, before: dict, after: dict, splits: dict,
                blocks: dict, start: float, tokens_at_start: int) -> dict | None:
    """Save the trained model with its results and publish them into --output-dir.

    All processes must call this (saving may gather weights); rank 0 writes.

    Args:
        cfg: the run's options.
        trainer: the Trainer after `train()` (holding the best model).
        result: what `train()` returned.
        before: the starting model's perplexities; after: the trained model's.
        splits: abstracts per split; blocks: token blocks per split.
        start: the run's start (time.time()); tokens_at_start: tokens seen before a resume.

    Returns:
        The metrics written to metrics.json (None on other processes).
    """
    out = Path(cfg.output_dir)
    main_process = trainer.is_world_process_zero()
    stage = final_stage(out) if main_process else out / FINAL_STAGE
    try:
        trainer.save_model(str(stage))  # the best checkpoint's weights (load_best_model_at_end)
        if not main_process:
            return None
        trainer.state.save_to_json(str(stage / "trainer_state.json"))  # what save_state() writes
        metrics = _write_results(cfg, trainer, result, before, after, splits, blocks, start,
                                 tokens_at_start, stage)
        publish_final(stage, out)
    except BaseException:
        if main_process:
            shutil.rmtree(stage, ignore_errors=True)
        raise
    return metrics


def _write_results(cfg, trainer, result, before, after, splits, blocks, start, tokens_at_start,
                   folder: Path) -> dict:
    """Write metrics.json, loss.png and the model card into `folder`; return the metrics."""
    from finetune.card import plot_loss, write_card, write_metrics
    from finetune.speed import SpeedCallback
    from finetune.train import hardware_info

    speed = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, SpeedCallback))
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
    write_metrics(folder, metrics)
    # train() starts a fresh log history, so the starting model's loss is added as step 0.
    plot_loss([{"step": 0, "eval_loss": before["validation_loss"]}, *state.log_history],
              folder / "loss.png")
    write_card(folder, cfg.push_to_hub or str(Path(cfg.output_dir)), metrics, cfg.to_dict())
    return metrics


def report(cfg: FinetuneConfig, metrics: dict, before: dict, after: dict, log) -> None:
    """The result lines, then the push of the published model directory (--push-to-hub)."""
    out = Path(cfg.output_dir)
    for split in ("validation", "test"):
        log(f"finetune: {split} perplexity {before[f'{split}_perplexity']:.2f} → "
            f"{after[f'{split}_perplexity']:.2f}")
    log(f"finetune: {metrics['tokens_seen']:,} tokens seen, {metrics['tokens_per_s']:,.0f} "
        f"tokens/s, {metrics['wall_time_s']:.0f} s wall; model written to {out}")
    if cfg.push_to_hub:
        from finetune.hub import push_to_hub

        log(f"finetune: pushed to {push_to_hub(out, cfg.push_to_hub, cfg.private)}")
