"""The loop's side of a beam row: N slots of one request running one `BeamSearch`.

The executor keeps a `BeamRows` per beam row: the search, which slot holds which beam, and
(when the request asked for candidates) each beam's trail of per-token records. After each
step it reports a `BeamStep` (parents, tokens, probabilities; the hypotheses once done); the
scheduler turns that into the row's message and a ("reorder", slots, parents) cache operation
for the next plan, which the executor applies with `place_children`: a parent's first child
stays in the parent's own slot, only extra children are copied, into slots of beams that died.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .sampling.beam import BeamSearch
from .sampling.candidates import beam_candidates


@dataclass(frozen=True)
class BeamStep:
    """What one beam row did in one step.

    Attributes:
        slots: the slots that held beams 0..N-1 during the step (the reorder's slots).
        parents, tokens: new running beam i continues beam parents[i] with tokens[i].
        probs: raw probability of each tokens[i] given its parent.
        done: the search ended with this step.
        hypotheses: once done, (token_ids, score, raw probabilities, candidates or None) of
            every finished hypothesis, best first; else ().
    """

    slots: tuple[int, ...]
    parents: tuple[int, ...]
    tokens: tuple[int, ...]
    probs: tuple[float, ...]
    done: bool
    hypotheses: tuple = ()


def place_children(parents) -> tuple[list[int], list[tuple[int, int]]]:
    """Where each new beam lives after a step, with the fewest cache copies.

    Args:
        parents: new beam i continues old beam parents[i] (old beam j sits in position j).

    Returns:
        (homes, copies): new beam i sits in position homes[i]; `copies` are the (src, dst)
        positions to copy, len(parents) - len(set(parents)) of them. A parent's first child
        keeps the parent's position (no copy, cycles included); an extra child takes the
        position of a beam with no child. No copy reads a position that another overwrites.
    """
    homes, copies, taken = [-1] * len(parents), [], set()
    for i, p in enumerate(parents):
        if p not in taken:
            homes[i] = p
            taken.add(p)
    free = iter(j for j in range(len(parents)) if j not in taken)
    for i, p in enumerate(parents):
        if homes[i] < 0:
            homes[i] = next(free)
            copies.append((p, homes[i]))
    return homes, copies


class BeamRows:
    """One beam row on the loop's thread.

    Args:
        params: the row's SamplingParams (num_beams, length_penalty, early_stopping).
        slots: the N slots its beams start in (beam i in slots[i]).
        max_new_tokens, eos_ids: the request's.
        k: candidates per token (0: none recorded).
    """

    def __init__(self, params, slots, max_new_tokens: int, eos_ids, k: int = 0):
        self.search = BeamSearch(params.num_beams, max_new_tokens, tuple(eos_ids),
                                 params.length_penalty, params.early_stopping)
        self.slots = list(slots)
        self.k = k
        # Per running beam: a linked trail (previous node, log-prob, candidates) of its tokens,
        # O(1) per step however long the beams grow.
        self._trails: list = [None] * len(self.slots)
        self._ended: dict = {}  # finished hypothesis -> its trail

    def step(self, logits: np.ndarray) -> BeamStep:
        """Advance the search with the logits of its slots (rows in beam order)."""
        search, slots = self.search, tuple(self.slots)
        before = search.scores.copy()
        parents, tokens = search.step(logits)
        logp = search.logp
        lp = logp[parents, tokens].astype(np.float64)
        new = [h for h in search.finished if len(h.token_ids) == search.generated]
        cands = [None] * (len(parents) + len(new))
        if self.k:
            every_parent = np.concatenate([parents, [h.parent for h in new]]).astype(np.int64)
            every_token = np.concatenate([tokens, [h.token_ids[-1] for h in new]]).astype(np.int64)
            cands = beam_candidates(logp, before, every_parent, every_token, self.k)
        for j, h in enumerate(new):
            self._ended[h] = (self._trails[h.parent], float(logp[h.parent, h.token_ids[-1]]),
                              cands[len(parents) + j])
        self._trails = [(self._trails[p], lp[i], cands[i]) for i, p in enumerate(parents.tolist())]
        self._ended = {h: self._ended[h] for h in search.finished}  # only the kept ones
        hypotheses = tuple(self._unwind(h) for h in search.finished) if search.done else ()
        return BeamStep(slots, tuple(parents.tolist()), tuple(tokens.tolist()),
                        tuple(np.exp(lp).tolist()), search.done, hypotheses)

    def _unwind(self, h) -> tuple:
        """(token_ids, score, raw probabilities, candidates or None) of a finished hypothesis."""
        probs, cands, node = [], [], self._ended[h]
        while node is not None:
            node, logprob, cand = node
            probs.append(float(np.exp(logprob)))
            cands.append(cand)
        return (h.token_ids, h.score, tuple(reversed(probs)),
                tuple(reversed(cands)) if self.k else None)

    def reorder(self, slots, parents) -> tuple[list[int], list[tuple[int, int]]]:
        """The new slot of each beam after a step, and the (src, dst) slot copies it needs.

        Args:
            slots: the slots that held beams 0..N-1 during the step.
            parents: the step's parents.
        """
        homes, copies = place_children(parents)
        self.slots = [slots[h] for h in homes]
        return self.slots, [(slots[a], slots[b]) for a, b in copies]

    def last_tokens(self) -> list[int]:
        """The last token of each running beam (what its slot is fed next)."""
        return [beam[-1] for beam in self.search.beams]
