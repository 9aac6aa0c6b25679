"""Beam search as transformers 4.57.6 runs it, for one request, in numpy.

`GenerationMixin._beam_search` (transformers/generation/utils.py) with a batch of one and no
sampling: each step takes the log-softmax of every running beam's logits, adds the beam's
running score, keeps the top `max(2, 1 + len(eos)) * N` of the N x vocab continuations, retires
those that end (an EOS token, or the last allowed token) into the finished hypotheses if they
rank within the top N, and carries on with the N best that did not end. A finished hypothesis
scores sum(log-probs) / generated_length ** length_penalty. Whether to go on is transformers'
rule, including its three `early_stopping` modes (True: stop once N hypotheses are finished;
False: stop when the best running beam, scored at its current length, cannot beat the worst
finished one; "never": the same, at the longest possible length when length_penalty > 0).

Arithmetic is float32, as transformers does it on float32 logits, so scores agree to float32
rounding (near-ties may still order differently; the parity tests allow for that).

The engine runs the N beams as N rows of one request; after each step the rows are reordered
by `parents` (a child takes its parent's cache). This module knows nothing of caches.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

_MASK = np.float32(-1.0e9)  # transformers' "never pick this" offset


@dataclass(frozen=True)
class Finished:
    """A finished beam: its generated tokens (EOS included when it ended there), its score, and
    the running beam it continued in the step it ended (its index then, for the engine's
    per-token records)."""

    token_ids: tuple[int, ...]
    score: float
    parent: int = 0


@dataclass
class BeamSearch:
    """The state of one beam search.

    Args:
        num_beams: N, the beams kept running (>= 1).
        max_new_tokens: the most tokens a hypothesis may have.
        eos_ids: tokens that end a hypothesis.
        length_penalty: the exponent of the length that divides a finished score.
        early_stopping: True, False or "never" (see the module docstring).
    """

    num_beams: int
    max_new_tokens: int
    eos_ids: tuple[int, ...]
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    # running beams: tokens so far and running scores (sum of log-probs), best first
    beams: list[tuple[int, ...]] = field(init=False)
    scores: np.ndarray = field(init=False)
    finished: list[Finished] = field(init=False, default_factory=list)
    generated: int = field(init=False, default=0)
    logp: np.ndarray | None = field(init=False, default=None)  # the last step's log-softmax
    done: bool = field(init=False, default=False)
    _improvable: bool = field(init=False, default=True)

    def __post_init__(self):
        self.beams = [()] * self.num_beams
        # Only the first beam is live at the start: the N beams hold the same prompt.
        self.scores = np.full(self.num_beams, _MASK, dtype=np.float32)
        self.scores[0] = 0.0

    @property
    def candidates(self) -> int:
        """How many continuations a step keeps before splitting them into running and finished."""
        return max(2, 1 + len(self.eos_ids)) * self.num_beams

    def step(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Advance by one token.

        Args:
            logits: float32 [num_beams, vocab], row i the raw logits after running beam i.

        Returns:
            (parents, tokens), int64 [num_beams]: running beam i continues beam parents[i] with
            tokens[i]. After the step that sets `done`, they are not needed (the search ended).
        """
        n, vocab = logits.shape
        x = logits.astype(np.float32, copy=False)
        top = x.max(axis=-1, keepdims=True)
        logp = x - top - np.log(np.exp(x - top).sum(axis=-1, keepdims=True, dtype=np.float32))
        self.logp = logp
        total = (logp + self.scores[:, None]).reshape(-1)
        k = self.candidates
        best = np.argpartition(total, total.size - k)[-k:]
        best = best[np.argsort(-total[best], kind="stable")]
        cand_scores, parent, token = total[best], best // vocab, best % vocab
        length = self.generated + 1
        ends = np.isin(token, self.eos_ids) | (length >= self.max_new_tokens)
        self._retire(cand_scores, parent, token, ends, length)
        running = cand_scores + ends.astype(np.float32) * _MASK
        keep = np.argsort(-running, kind="stable")[:n]
        self.beams = [self.beams[parent[j]] + (int(token[j]),) for j in keep]
        self.scores = running[keep]
        self.generated = length
        self._check_stop(bool(ends.all()))
        return parent[keep].astype(np.int64), token[keep].astype(np.int64)

    def _retire(self, cand_scores, parent, token, ends, length) -> None:
        """Add the candidates that ended within the top N to the finished hypotheses (best N kept)."""
        full = len(self.finished) == self.num_beams and self.early_stopping is True
        if full or not self._improvable:
            return
        scaled = cand_scores / np.float32(length ** self.length_penalty)
        new = [Finished(self.beams[parent[j]] + (int(token[j]),), float(scaled[j]), int(parent[j]))
               for j in range(self.num_beams) if ends[j]]
        merged = sorted(self.finished + new, key=lambda h: -h.score)  # stable: older first on ties
        self.finished = merged[:self.num_beams]

    def _check_stop(self, all_ended: bool) -> None:
        if self.early_stopping == "never" and self.length_penalty > 0:
            hypothetical = self.max_new_tokens
        else:
            hypothetical = self.generated
        best_possible = self.scores[0] / np.float32(hypothetical ** self.length_penalty)
        if len(self.finished) == self.num_beams:
            worst = np.float32(min(h.score for h in self.finished))
        else:
            worst = _MASK  # a slot without a finished hypothesis: always worth going on
        self._improvable = self._improvable and bool(best_possible > worst)
        open_beam = not (len(self.finished) == self.num_beams and self.early_stopping is True)
        self.done = not (self._improvable and open_beam and not all_ended)

    def best(self) -> Finished:
        """The best finished hypothesis (after `done`)."""
        return self.finished[0]
