"""The decoding engine: one prompt, N sampling settings, one batched forward per step."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from .loop import run_alone
from .model import Model
from .request import Prepared
from .sampling.params import RowResult, SamplingParams, StepUpdate
from .score import ScoreResult, score_tokens


class Engine(Model):
    """A loaded model that streams continuations for several sampling settings side by side.

    Rows share the prompt, so the prompt is run once and its cache copied to every row; after
    that each step is one batched forward for all unfinished rows. Each row has its own
    warpers, random generator and EOS stop; finished rows leave the batch.

    `Engine.load` loads one (see `Model.load`); the model's properties (`context_size`,
    `eos_ids`, `tokenizer`, `runner`, `info`...) and `prepare` come from `Model`.
    """

    def score(self, text: str) -> ScoreResult:
        """The teacher-forced log-probability of each token of `text` given those before it.

        The first token is conditioned on EOS, as GPT-2-style models start a document. Texts
        longer than the context are scored with a sliding window (see `score.score_tokens`).
        Perplexity is `result.perplexity`.

        Returns:
            ScoreResult(token_ids, logprobs): natural logs, one per token.

        Raises:
            ValueError: text is not a string, gives no tokens, or the model has no EOS token.
        """
        ids = self.encode(text) if isinstance(text, str) else []
        issues = [] if ids else ["text must be a string that produces at least one token"]
        issues += [] if self.eos_ids else ["the model has no EOS token to start the text from"]
        if ids and max(ids) >= self.vocab_size:
            issues.append("the tokenizer produced ids beyond the model's vocabulary")
        if issues:
            raise ValueError("\n".join(issues))
        return score_tokens(self.runner, ids, self.eos_ids[0], self.context_size)

    def generate(self, prompt: str, params: Sequence[SamplingParams],
                 max_new_tokens: int = 64, candidates: int = 0) -> list[RowResult]:
        """Run `stream` to the end.

        Returns:
            One finished RowResult per params entry.
        """
        rows: list[RowResult] = []
        for update in self.stream(prompt, params, max_new_tokens, candidates):
            rows = update.rows
        return rows

    def stream(self, prompt: str, params: Sequence[SamplingParams],
               max_new_tokens: int = 64, candidates: int = 0) -> Iterator[StepUpdate]:
        """Generate continuations of `prompt`, one row per SamplingParams, step by step.

        Args:
            prompt: the text to continue; cut from the left when longer than
                context - max_new_tokens tokens (reported as `prompt_truncated`).
            params: one SamplingParams per output row (num_beams > 1: a beam search, N
                rows of the batch but one output row).
            max_new_tokens: most new tokens per row, 1 .. context - 1.
            candidates: K, the top-K candidates recorded behind every emitted token
                (`RowResult.candidates`); 0 = off, the default (no extra work).

        Returns:
            An iterator of StepUpdate, one per step; the RowResult objects are the same each
            step and updated in place.

        Raises:
            ValueError: (at once, before any work) an empty prompt, no params, bad params, a
                bad max_new_tokens or candidates, listing every problem.
        """
        return self._run(self.prepare(prompt, params, max_new_tokens, None, candidates))

    def stream_tokens(self, token_ids: Sequence[int], params: Sequence[SamplingParams],
                      max_new_tokens: int = 64, candidates: int = 0) -> Iterator[StepUpdate]:
        """`stream` for a prompt given as token ids (what benchmarks and tests feed).

        Raises:
            ValueError: empty or out-of-vocabulary ids, or any problem `stream` reports.
        """
        ids = [] if token_ids is None else token_ids  # None is bad ids here, not "no ids"
        return self._run(self.prepare(None, params, max_new_tokens, ids, candidates))

    def _run(self, prepared: Prepared) -> Iterator[StepUpdate]:
        """Decode one request as a batch of its own, on the caller's thread (the app's loop,
        sized to this request), from the first next()."""
        _, updates = run_alone(self, prepared)
        yield from updates
