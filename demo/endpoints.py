"""The explorer's API endpoints beyond the columns' own: every column at once, and /explain."""

from __future__ import annotations

from collections.abc import Callable

from generation.serve import Server

from .columns import CANDIDATES, COLUMNS, MAX_NEW, api_knobs
from .handlers import check_request, stream_rows
from .panel import token_entry


def explain_endpoint(server: Server) -> Callable[..., dict]:
    """The handler of `/explain`: (prompt, max_new_tokens, every column's knobs, seed,
    candidates) -> every column's tokens with their candidates, as JSON."""
    knobs = api_knobs(COLUMNS)
    tokenizer = server.engine.tokenizer

    def explain(prompt: str, max_new_tokens: int, *values) -> dict:
        max_new, *checked, candidates = check_request(
            prompt, [(MAX_NEW, max_new_tokens), *zip(knobs, values[:-1], strict=True),
                     (CANDIDATES, values[-1])])
        named = {k.name: v for k, v in zip(knobs, checked, strict=True)}
        rows = []
        for update in stream_rows(server, prompt, [c.params(named) for c in COLUMNS], max_new,
                                  candidates=candidates):
            rows = update.rows
        return {"prompt": prompt, "candidates": candidates,
                "columns": [_column_json(tokenizer, c, r) for c, r in zip(COLUMNS, rows, strict=True)]}

    explain.__doc__ = ("API `/explain`: per column its text and tokens, each token with its top "
                       "`candidates` tokens by raw probability (raw, and this column's warped "
                       "probability or the beam's running score), both entropies (nats) and the "
                       "emitted token's rank (0 = the likeliest).")
    return explain


def _column_json(tokenizer, column, row) -> dict:
    out = {"key": column.key, "text": row.text, "finish_reason": row.finish_reason,
           "tokens": [token_entry(tokenizer, t, c) for t, c in zip(row.token_ids, row.candidates, strict=True)]}
    if column.beam:
        out["hypotheses"] = [{"text": h.text, "token_ids": list(h.token_ids), "score": float(h.score)}
                             for h in row.hypotheses]
    return out
