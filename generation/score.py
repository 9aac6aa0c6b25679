"""Teacher-forced scoring: the log-probability the model gives each token of a text."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Tokens fed per call: bounds the logits of one call to CHUNK x vocab floats (13 MB for GPT-2's
# vocabulary) whatever the text's length.
CHUNK = 64


@dataclass
class ScoreResult:
    """What `Engine.score` returns.

    Attributes:
        token_ids: the text's tokens.
        logprobs: float64 [len(token_ids)]: logprobs[i] = ln p(token_ids[i] | EOS, token_ids[:i])
            (within the sliding window described in `score_tokens`).
    """

    token_ids: list[int] = field(default_factory=list)
    logprobs: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def perplexity(self) -> float:
        """exp of the mean negative log-probability."""
        return float(np.exp(-self.logprobs.mean()))


def score_tokens(runner, token_ids: list[int], bos: int, context: int) -> ScoreResult:
    """Score `token_ids` given a start token, CHUNK tokens per call on one cache slot.

    A text longer than the context is scored with a sliding window: when the next chunk would
    not fit, the cache restarts from the last context // 2 tokens read (fed again, their logits
    unused), so every token is predicted from at least context // 2 tokens before it (all of
    them while the text fits) and each token is scored exactly once.

    Args:
        runner: a DecodeRunner or Runner.
        token_ids: the tokens to score (at least one).
        bos: the token everything is conditioned on (EOS for GPT-2-style models).
        context: the most tokens the model attends to.

    Returns:
        The ScoreResult.
    """
    inputs = [bos] + list(token_ids[:-1])  # inputs[i] is read to predict token_ids[i]
    targets = np.asarray(token_ids, dtype=np.int64)
    logprobs = np.empty(len(targets), dtype=np.float64)
    chunk = max(1, min(CHUNK, context // 2))
    cache = runner.new_cache(1, context)
    done = 0
    while done < len(inputs):
        piece = inputs[done:done + chunk]
        if cache.lengths[0] + len(piece) > context:
            cache.clear(0)
            keep = context // 2
            runner.prefill(cache, 0, inputs[done - keep:done])
        logits = runner.prefill(cache, 0, piece, keep=len(piece))
        logprobs[done:done + len(piece)] = _log_softmax_at(logits, targets[done:done + len(piece)])
        done += len(piece)
    return ScoreResult(token_ids=[int(t) for t in token_ids], logprobs=logprobs)


def _log_softmax_at(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """log softmax(logits[i])[targets[i]] per row, in float64."""
    x = logits.astype(np.float64)
    top = x.max(axis=-1, keepdims=True)
    log_z = np.log(np.exp(x - top).sum(axis=-1)) + top[:, 0]
    return x[np.arange(len(targets)), targets] - log_z
