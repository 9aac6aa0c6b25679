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
            (within the sliding window of `score_tokens` for texts beyond the context).
    """

    token_ids: list[int] = field(default_factory=list)
    logprobs: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def perplexity(self) -> float:
        """exp of the mean negative log-probability."""
        return float(np.exp(-self.logprobs.mean()))


def score_tokens(runner, token_ids: list[int], bos: int, context: int) -> ScoreResult:
    """Score `token_ids` given a start token, at most CHUNK tokens per call on one cache slot.

    Texts longer than the context are scored with a sliding window of half the context,
    h = context // 2: the token read at input position p (inputs = [bos] + token_ids[:-1])
    is predicted from all inputs 0..p while p < 2h, and from inputs h * (p // h - 1) .. p
    beyond, i.e. from h to 2h - 1 tokens. Each window restart feeds its first h inputs again
    (their logits unused), so a long text costs about twice a short one per token.

    Args:
        runner: a DecodeRunner or Runner.
        token_ids: the tokens to score (at least one).
        bos: the token everything is conditioned on (EOS for GPT-2-style models).
        context: the most tokens the model attends to (at least 2).

    Returns:
        The ScoreResult.
    """
    inputs = [bos] + list(token_ids[:-1])  # inputs[i] is read to predict token_ids[i]
    targets = np.asarray(token_ids, dtype=np.int64)
    logprobs = np.empty(len(targets), dtype=np.float64)
    half = max(1, context // 2)
    cache = runner.new_cache(1, context)
    done = 0
    while done < len(inputs):
        if done >= 2 * half and done % half == 0:
            # The cache is full: restart the window from the last h inputs.
            cache.clear(0)
            runner.prefill(cache, 0, inputs[done - half:done])
        # Pieces never cross a multiple of h, so restarts fall exactly on them.
        end = min(len(inputs), done + CHUNK, (done // half + 1) * half)
        logits = runner.prefill(cache, 0, inputs[done:end], keep=end - done)
        logprobs[done:end] = _log_softmax_at(logits, targets[done:end])
        done = end
    return ScoreResult(token_ids=[int(t) for t in token_ids], logprobs=logprobs)


def _log_softmax_at(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """log softmax(logits[i])[targets[i]] per row, in float64."""
    x = logits.astype(np.float64)
    top = x.max(axis=-1, keepdims=True)
    log_z = np.log(np.exp(x - top).sum(axis=-1)) + top[:, 0]
    return x[np.arange(len(targets)), targets] - log_z


def bits_per_byte(score, texts) -> dict:
    """Mean bits per UTF-8 byte of `texts`, each scored alone: -sum(log2 p(token)) / bytes.

    A measure that does not depend on the tokenizer, so models with different vocabularies
    compare fairly. Perplexity per token is given too (over all tokens of all texts).

    Args:
        score: text -> ScoreResult (e.g. `Engine.score`).
        texts: the texts (at least one, none empty).

    Returns:
        {"bits_per_byte": mean over texts, "perplexity": per token, "texts", "tokens", "bytes"}.
    """
    per_text, nll, tokens, nbytes = [], 0.0, 0, 0
    for text in texts:
        size = len(text.encode("utf-8"))
        if size == 0:
            raise ValueError("bits_per_byte: an empty text has no bytes to score")
        result = score(text)
        text_nll = float(-result.logprobs.sum())
        per_text.append(text_nll / np.log(2) / size)
        nll += text_nll
        tokens += len(result.token_ids)
        nbytes += size
    if not per_text:
        raise ValueError("bits_per_byte: no texts")
    return {"bits_per_byte": float(np.mean(per_text)), "perplexity": float(np.exp(nll / tokens)),
            "texts": len(per_text), "tokens": tokens, "bytes": nbytes}
