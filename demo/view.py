"""What the page shows: a column's stats line, its shaded pieces, and the model panel."""

from __future__ import annotations

from pathlib import Path

# The checkout (or the Space's folder): where app.py and the bundled model sit.
ROOT = Path(__file__).resolve().parent.parent


def stats_line(row) -> str:
    """One line under a column: new tokens, time to first token, tokens/s, why it stopped."""
    s = row.stats
    why = {"eos": " · ended (EOS)", "length": " · max tokens"}.get(row.finish_reason or "", "")
    return f"**{s.new_tokens}** new tokens · TTFT **{s.ttft_s * 1000:.0f} ms** · **{s.tokens_per_s:.1f}** tok/s{why}"


def view(rows) -> list:
    """Texts, stats lines and (piece, probability) lists, in the order of the UI's outputs."""
    return ([r.text for r in rows] + [stats_line(r) for r in rows]
            + [[(piece, round(prob, 3)) for piece, prob in r.pieces] for r in rows])


def shown_model(model: str) -> str:
    """The model as the page shows it: a Hub id as is, a local directory relative to app.py,
    or (outside it) only its folder name, so the server's paths stay private."""
    path = Path(model).expanduser()
    if not path.exists():
        return model
    path = path.resolve()
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name


def _shown_file(info: dict) -> str:
    """The ONNX file relative to its model directory (else its name)."""
    path, model = Path(str(info.get("onnx_file"))), Path(str(info.get("model"))).expanduser()
    if model.exists() and path.resolve().is_relative_to(model.resolve()):
        return path.resolve().relative_to(model.resolve()).as_posix()
    return path.name


def model_panel(info: dict) -> str:
    """The model panel's Markdown table, from `engine.info`."""
    params = info.get("parameters", 0)
    rows = [("model", f"`{shown_model(str(info.get('model')))}`"), ("ONNX file", f"`{_shown_file(info)}`"),
            ("precision", info.get("precision")), ("provider", info.get("provider")),
            ("parameters", f"{params:,}"), ("context", f"{info.get('context')} tokens"),
            ("layers", info.get("layers")), ("vocabulary", info.get("vocab_size"))]
    return "| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
