"""bench/train.py's derived figures (MFU, speed-up, loss agreement), table and loss plot."""

from __future__ import annotations

from pathlib import Path

from finetune.card import finish_plot
from finetune.speed import peak_flops

FLOPS_FORMULA = ("6 N + 12 d_model sum_layers T_attn per trained token (N: parameters without "
                 "position embeddings; T_attn: block for global layers, window for local ones)")


def summarize(results: list[dict], info: dict, peak_tflops: float | None) -> dict:
    """Add `mfu`, `vs_a` and `loss_max_rel_diff_vs_a` to each result; return the basis used.

    Args:
        results: run_variant outputs, (a) first when it ran.
        info: the machine (its "gpu" names the peak).
        peak_tflops: an explicit device peak, else the GPU's dense bf16 peak when known.

    Returns:
        {"peak_tflops": ..., "flops_formula": ...}, also stored in `info`.
    """
    peak = peak_flops(info.get("gpu"), True, peak_tflops)
    base = next((r for r in results if r["name"] == "a"), None)
    for r in results:
        r["mfu"] = r["tokens_per_s"] * r["flops_per_token"] / peak if peak else None
        if base is not None:
            r["vs_a"] = r["tokens_per_s"] / base["tokens_per_s"]
            pairs = list(zip(r["losses"], base["losses"], strict=True))
            r["loss_max_rel_diff_vs_a"] = max(abs(x - y) / abs(y) for x, y in pairs) if pairs else None
    info["peak_tflops"] = peak / 1e12 if peak else None
    info["flops_formula"] = FLOPS_FORMULA
    return {"peak_tflops": info["peak_tflops"], "flops_formula": FLOPS_FORMULA}


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def table(results: list[dict], info: dict, settings: dict, size: str) -> str:
    """A Markdown table of the variants, with the setting and the machine above it."""
    where = info["gpu"] or f"{info['cpu']} ({info['cores_visible']} cores)"
    lines = [f"{size}, {results[0]['parameters']:,} parameters, block {settings['block_size']}, "
             f"{results[0]['tokens_per_step']:,} tokens per optimizer step (batch "
             f"{settings['batch_size']} x {settings['gradient_accumulation_steps']} accumulation), "
             f"{settings['steps']} steps after {settings['warmup_steps']} warm-up, on {where}, "
             f"load {info['load_average_1m_at_start']:.2f} at start",
             "",
             "| variant | precision | attention | optimizer | compile | workers, pin | tokens/s "
             "| step (s) | peak memory | MFU | vs (a) | loss vs (a), max rel. diff |",
             "| --- | --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        s = r["speed"]
        mfu = f"{r['mfu']:.1%}" if r.get("mfu") is not None else "n/a"
        vs = f"{r['vs_a']:.2f}x" if "vs_a" in r else "n/a"
        diff = r.get("loss_max_rel_diff_vs_a")
        lines.append(
            f"| {r['name']} | {s['precision']}{' +tf32' if s['tf32'] else ''} | "
            f"{s['attn_implementation']} | {s['optim']} | {'on' if s['torch_compile'] else 'off'} | "
            f"{s['dataloader_num_workers']}, {'yes' if s['dataloader_pin_memory'] else 'no'} | "
            f"{r['tokens_per_s']:,.0f} | {r['step_time_s']:.3f} | {_mib(r['peak_memory_bytes'])} | "
            f"{mfu} | {vs} | {'n/a' if diff is None else f'{diff:.2%}'} |")
    lines += ["", f"peak memory: {results[0]['peak_memory_kind']}; step: median; MFU against "
              f"{info['peak_tflops'] or 'no known'} TFLOP/s; FLOPs per token: {FLOPS_FORMULA}"]
    return "\n".join(lines)


def loss_plot(results: list[dict], path: Path, warmup: int, title: str) -> Path:
    """Every variant's training loss per optimizer step in one PNG (warm-up shaded)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    styles = ("-", "--", ":", "-.")  # equal curves must stay visible on top of each other
    for i, r in enumerate(results):
        steps = range(1, len(r["losses"]) + 1)
        ax.plot(steps, r["losses"], styles[i % len(styles)], marker=".", linewidth=1 + 0.5 * i,
                label=r["name"])
    if warmup:
        ax.axvspan(0.5, warmup + 0.5, color="grey", alpha=0.15, label="warm-up (not timed)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title(title, fontsize=9)
    return finish_plot(fig, ax, "training loss (nats/token)", path)
