"""What the page shows: a column's stats line, its shaded pieces, and the model panel."""

from __future__ import annotations

from pathlib import Path

from .columns import COLUMNS

HYPOTHESIS_CHARS = 80  # a hypothesis longer than this shows its first and last 40 characters

# The checkout (or the Space's folder): where app.py and the bundled model sit.
ROOT = Path(__file__).resolve().parent.parent


def stats_line(row) -> str:
    """One line under a column: new tokens, time to first token, tokens/s, why it stopped."""
    s = row.stats
    why = {"eos": " · ended (EOS)", "length": " · max tokens"}.get(row.finish_reason or "", "")
    return f"**{s.new_tokens}** new tokens · TTFT **{s.ttft_s * 1000:.0f} ms** · **{s.tokens_per_s:.1f}** tok/s{why}"


def view(rows, spans=None) -> list:
    """Texts, stats lines, (piece, probability) lists and the beam columns' hypotheses, in the
    order of the UI's outputs.

    Args:
        rows: the RowResults, one per column of COLUMNS.
        spans: per row its (piece, first token) pairs (`panel.spans`) once it finished: the
            shaded pieces are then the ones the candidate panel indexes.
    """
    shaded = [shaded_pieces(r, None if spans is None else spans[i]) for i, r in enumerate(rows)]
    hyps = [hypotheses_table(r) for r, c in zip(rows, COLUMNS, strict=True) if c.beam]
    return [r.text for r in rows] + [stats_line(r) for r in rows] + shaded + hyps


def shaded_pieces(row, spans=None) -> list[tuple[str, float]]:
    """A row's pieces with the probability of the token that completed each (its raw
    probability; a beam row's text can be replaced, so its pieces come from `spans`)."""
    if spans is None or [p for p, _ in spans] == [p for p, _ in row.pieces]:
        return [(piece, round(prob, 3)) for piece, prob in row.pieces]
    ends = [first for _, first in spans[1:]] + [len(row.token_ids)]
    return [(piece, round(_raw_prob(row, end - 1), 3)) for (piece, _), end in zip(spans, ends, strict=True)]


def _raw_prob(row, index: int) -> float:
    """The raw probability of the row's token at `index` (0 when not among its candidates)."""
    if index >= len(row.candidates):
        return 0.0
    cand = row.candidates[index]
    return float(cand.raw[cand.emitted_rank]) if cand.emitted_rank < len(cand.raw) else 0.0


def hypotheses_table(row) -> str:
    """A beam row's finished hypotheses, best first, with their scores (Markdown; a long one
    shows its start and its end, where beams differ most)."""
    hyps = getattr(row, "hypotheses", None) or []
    if not hyps:
        return "&nbsp;"
    lines = ["finished hypotheses, best first:", "", "| # | score | hypothesis |", "|---|---|---|"]
    for i, h in enumerate(hyps):
        text = " ".join(h.text.split())
        if len(text) > HYPOTHESIS_CHARS:
            half = HYPOTHESIS_CHARS // 2
            text = text[:half] + " … " + text[-half:]
        lines.append(f"| {i + 1} | {h.score:.3f} | {text.replace('|', chr(92) + '|')} |")
    return "\n".join(lines)


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
