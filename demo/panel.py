"""The candidates behind a column's tokens: what /explain returns and the page's panel shows.

A column's shaded view shows pieces of text, not tokens: a piece is released when a token
completes a character (an emoji can take several tokens), so `spans` replays the row's tokens
to know which tokens made each piece. Clicking a piece shows the candidates of its first
token, the one a fork replaces (text before it is whole characters).
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from generation.detok import IncrementalDetokenizer

from .columns import COLUMNS

BAR_PX = 120  # a probability of 1 is this wide


def spans(tokenizer, token_ids: Sequence[int]) -> list[tuple[str, int]]:
    """The row's pieces of text, each with the index of its first token.

    Args:
        tokenizer: the engine's `tokenizers.Tokenizer`.
        token_ids: the row's new tokens (a final EOS included).

    Returns:
        (piece, first token index) pairs; the pieces join to the row's text.
    """
    detok, out, first = IncrementalDetokenizer(tokenizer), [], 0
    for i, token in enumerate(token_ids):
        piece = detok.add(token)
        if i == len(token_ids) - 1:
            piece += detok.flush()
        if piece:
            out.append((piece, first))
            first = i + 1
    return out


def token_entry(tokenizer, token_id: int, candidates) -> dict:
    """One emitted token with its candidates, as /explain returns it (plain JSON types).

    Args:
        tokenizer: decodes each candidate alone (a piece of a character shows as U+FFFD).
        token_id: the emitted token.
        candidates: its `generation.Candidates`.

    Returns:
        {"id", "text", "emitted_rank", "raw_entropy", "warped_entropy", "candidates": [{"id",
        "text", "raw", and "warped" or "beam_score"}]}.
    """
    scores = candidates.beam_scores if candidates.beam_scores is not None else candidates.warped
    other = "beam_score" if candidates.beam_scores is not None else "warped"
    return {
        "id": int(token_id), "text": tokenizer.decode([int(token_id)]),
        "emitted_rank": int(candidates.emitted_rank),
        "raw_entropy": float(candidates.raw_entropy),
        "warped_entropy": None if candidates.warped_entropy is None else float(candidates.warped_entropy),
        "candidates": [{"id": int(t), "text": tokenizer.decode([int(t)]), "raw": float(r), other: float(s)}
                       for t, r, s in zip(candidates.token_ids, candidates.raw, scores, strict=True)],
    }


def shown_token(text: str) -> str:
    """A token as the panel writes it: spaces and line breaks made visible."""
    return text.replace(" ", "\u2423").replace("\n", "\u23ce") or "(nothing)"


def _bar(fraction: float) -> str:
    width = max(0, min(BAR_PX, round(fraction * BAR_PX)))
    return f'<span class="bar" aria-hidden="true" style="width:{width}px"></span>'


def panel_html(title: str, piece_index: int, piece: str, entry: dict) -> str:
    """The candidate panel: a real table (caption, column headers), bars beside the numbers.

    Args:
        title: the column's title.
        piece_index: the clicked piece's position in the column's text (0 = first).
        piece: its text.
        entry: its first token's `token_entry`.

    Returns:
        HTML (every text from the model escaped).
    """
    beam = any("beam_score" in c for c in entry["candidates"])
    rank = entry["emitted_rank"]
    warped = entry["warped_entropy"]
    caption = (f"{html.escape(title)}, piece {piece_index + 1} “{html.escape(shown_token(piece))}”: "
               f"the emitted token ranks {rank + 1} under the raw distribution"
               f"{'' if rank < len(entry['candidates']) else ' (outside these candidates)'}; "
               f"entropy {entry['raw_entropy']:.3f} nats raw"
               + ("" if warped is None else f", {warped:.3f} nats in this column"))
    head = "beam's running score (sum of log-probs)" if beam else "this column's probability"
    rows = []
    for i, cand in enumerate(entry["candidates"]):
        mark = " (emitted)" if i == rank else ""
        score = (f"{cand['beam_score']:.3f}" if beam
                 else f"{_bar(cand['warped'])} {cand['warped']:.3f}")
        attr = ' class="emitted"' if mark else ""
        rows.append(f'<tr{attr}><th scope="row">{i + 1}</th>'
                    f"<td><code>{html.escape(shown_token(cand['text']))}</code>{mark}</td>"
                    f"<td>{_bar(cand['raw'])} {cand['raw']:.3f}</td><td>{score}</td></tr>")
    return (f'<table class="candidates"><caption>{caption}</caption><thead><tr>'
            f'<th scope="col">rank</th><th scope="col">token</th>'
            f'<th scope="col">raw probability</th><th scope="col">{head}</th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


PANEL_CSS = (".candidates .bar { display: inline-block; height: 0.8em; background: #6366f1; "
             "vertical-align: middle; } .candidates tr.emitted { font-weight: bold; } "
             ".candidates caption { text-align: left; caption-side: top; } "
             "[id$=-hypotheses] :is(td, th):nth-child(-n+2) { white-space: nowrap; }")


def run_record(tokenizer, prompt: str, values: Sequence, rows) -> dict:
    """What the panel and a fork need of a finished run (kept in the session's gr.State).

    Args:
        tokenizer: the engine's tokenizer.
        prompt: the run's prompt.
        values: the page's controls after the prompt, as the run had them.
        rows: its RowResults, one per column of COLUMNS.

    Returns:
        {"prompt", "values", "columns": per column {"title", "pieces": (piece, first token)
        pairs, "token_ids", "candidates"}}.
    """
    return {"prompt": prompt, "values": list(values), "columns": [
        {"title": c.title, "pieces": spans(tokenizer, r.token_ids), "token_ids": list(r.token_ids),
         "candidates": list(r.candidates)} for c, r in zip(COLUMNS, rows, strict=True)]}


def selected_entry(tokenizer, run: dict, column: int, piece_index: int) -> tuple[str, dict] | None:
    """The clicked piece's text and its first token's `token_entry`, or None when the run has
    no such piece or no candidates for it."""
    col = run["columns"][column]
    if not 0 <= piece_index < len(col["pieces"]):
        return None
    piece, first = col["pieces"][piece_index]
    if first >= len(col["candidates"]):
        return None
    return piece, token_entry(tokenizer, col["token_ids"][first], col["candidates"][first])
