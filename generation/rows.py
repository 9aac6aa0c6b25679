"""The per-row state of one request: settings, generator, detokenizer, seen tokens, result."""

from __future__ import annotations

import numpy as np

from .detok import IncrementalDetokenizer
from .params import RowResult, RowStats, SamplingParams


class RowState:
    """One output row while it decodes; `result` is what the caller sees (updated in place).

    Args:
        params: the row's sampling settings.
        prompt_ids: the prompt as fed to the model (after truncation).
        tokenizer: the `tokenizers.Tokenizer` that decodes the row.
        vocab_size: the model's vocabulary size (for the repetition-penalty mask).
    """

    def __init__(self, params: SamplingParams, prompt_ids: list[int], tokenizer, vocab_size: int):
        self.params = params
        self.rng = np.random.default_rng(params.seed)
        self.detok = IncrementalDetokenizer(tokenizer)
        self.seen = None
        if params.repetition_penalty != 1:
            # The penalty covers the prompt too, as in transformers.
            self.seen = np.zeros(vocab_size, dtype=bool)
            self.seen[prompt_ids] = True
        self.result = RowResult(stats=RowStats(prompt_tokens=len(prompt_ids)))

    def accept(self, token: int, probability: float, now: float, eos: set[int],
               last_step: bool) -> str:
        """Record the row's next token.

        Args:
            token: the chosen token.
            probability: its probability under the raw logits.
            now: seconds since the request started.
            eos: token ids that end the row.
            last_step: True when max_new_tokens is reached with this token.

        Returns:
            The text this token completes ("" while a character is unfinished).
        """
        row = self.result
        row.token_ids.append(token)
        if self.seen is not None:
            self.seen[token] = True
        _update_stats(row.stats, now)
        if token in eos:
            row.finished, row.finish_reason = True, "eos"
            delta = self.detok.flush()  # the EOS token itself has no text
        else:
            delta = self.detok.add(token)
            if last_step:
                row.finished, row.finish_reason = True, "length"
                delta += self.detok.flush()
        if delta:
            row.text += delta
            row.pieces.append((delta, probability))
        return delta


def _update_stats(stats: RowStats, now: float) -> None:
    stats.new_tokens += 1
    if stats.new_tokens == 1:
        stats.ttft_s = now
    stats.elapsed_s = now
    decode_time = now - stats.ttft_s
    stats.tokens_per_s = ((stats.new_tokens - 1) / decode_time if decode_time > 0
                          else stats.new_tokens / max(now, 1e-9))
