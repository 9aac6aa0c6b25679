"""The candidate panel's pieces and table, against the engine's own results."""

from __future__ import annotations

import html
import re

from demo.panel import panel_html, shown_token, spans
from generation import SamplingParams

PROMPT = "In this paper, we propose a new method for"


def test_spans_are_the_row_s_pieces_and_start_at_their_first_token(engine):
    rows = engine.generate(PROMPT, [SamplingParams(), SamplingParams(temperature=1.5, seed=3)], 40)
    for row in rows:
        got = spans(engine.tokenizer, row.token_ids)
        assert [p for p, _ in got] == [p for p, _ in row.pieces]
        firsts = [f for _, f in got]
        assert firsts[0] == 0 and firsts == sorted(set(firsts))
        for (piece, first), end in zip(got, firsts[1:] + [len(row.token_ids)], strict=True):
            assert engine.tokenizer.decode(row.token_ids[first:end]) == piece


def test_a_character_of_several_tokens_is_one_piece(engine):
    text = " a 😀 b \u00e9t\u00e9"
    ids = engine.encode(text)
    got = spans(engine.tokenizer, ids)
    assert "".join(p for p, _ in got) == text
    assert "\ufffd" not in "".join(p for p, _ in got)
    emoji = next(i for i, (p, _) in enumerate(got) if "😀" in p)
    assert len(ids) >= len(got)
    if len(engine.tokenizer.encode("😀").ids) > 1:  # byte pieces: one piece from several tokens
        assert got[emoji + 1][1] - got[emoji][1] > 1


def test_the_panel_is_a_table_with_headers_and_escaped_tokens():
    entry = {"emitted_rank": 1, "raw_entropy": 1.25, "warped_entropy": 0.5, "candidates": [
        {"id": 1, "text": " <b>x</b>", "raw": 0.5, "warped": 0.0},
        {"id": 2, "text": "\n", "raw": 0.25, "warped": 1.0}]}
    out = panel_html("Top-k / Top-p", 2, " <b>x", entry)
    assert "<b>" not in out and html.escape(shown_token(" <b>x</b>")) in out
    assert re.search(r"<caption>.*piece 3.*ranks 2.*1\.250 nats raw, 0\.500 nats", out)
    assert out.count('<th scope="col">') == 4 and out.count('<th scope="row">') == 2
    assert out.count("(emitted)") == 1 and 'class="emitted"' in out
    assert 'aria-hidden="true"' in out  # bars are decoration; the numbers are the content


def test_a_beam_panel_shows_running_scores_and_a_rank_outside_the_candidates():
    entry = {"emitted_rank": 7, "raw_entropy": 2.0, "warped_entropy": None, "candidates": [
        {"id": 1, "text": " a", "raw": 0.5, "beam_score": -3.25}]}
    out = panel_html("Beam search", 0, " a", entry)
    assert "running score" in out and "-3.250" in out and "outside these candidates" in out
    assert "in this column" not in out
