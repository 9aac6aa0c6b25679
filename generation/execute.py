"""The model side of a step: run a `Plan` on the runner's cache and draw every row's next token.

The executor owns the runner, its cache (allocated once) and, per decoding slot, the row's
sampler state: its settings, its random generator, the mask of tokens it has seen (for a
repetition penalty) and its last token. It applies the plan's cache operations and prompt
chunks in order, runs the one batched step, and calls `select_next`. It knows tensors and
slots, never requests.
"""

from __future__ import annotations

import time

import numpy as np

from .beams import BeamRows
from .request import Plan, Sampled, slots_of
from .runners.base import Runner
from .sampling.candidates import row_candidates
from .sampling.pipeline import needs_seen, select_next


class Executor:
    """Runs plans on one cache of `slots` slots of up to `capacity` tokens each.

    Attributes:
        runner: the model call.
        cache: the runner's cache.
        timing: seconds spent in the batched steps ("forward_s"), in the sampler and beam
            searches ("sample_s"), in beam reorders ("reorder_s", "reorder_copies" slot copies),
            and the most rows drawn in one step ("rows_peak").
    """

    def __init__(self, runner: Runner, slots: int, capacity: int, vocab_size: int, eos_ids=()):
        self.runner = runner
        self.cache = runner.new_cache(slots, capacity)
        for array in getattr(self.cache, "arrays", ()):
            # Touch every page now: the cache is allocated once and a server must hold all of it
            # anyway; left to first use, each new slot's page faults (zero-filled huge pages)
            # cost tens of ms in the middle of a step, and RSS would creep up as slots are used.
            array.fill(0)
        self.vocab_size = vocab_size
        self.tokens = np.zeros(slots, dtype=np.int64)  # each decoding slot's last token
        self.params: list = [None] * slots
        self.rngs: list = [None] * slots
        self.seen: list = [None] * slots
        self.beam: list = [None] * slots  # the BeamRows of a beam row's slots
        self.k: list = [0] * slots  # candidates asked per token
        self.eos_ids = tuple(eos_ids)
        # Slots with beams / asking for candidates: with neither, a step pays nothing for them.
        self._beam_slots: set[int] = set()
        self._asking: set[int] = set()
        self.timing = {"forward_s": 0.0, "sample_s": 0.0, "reorder_s": 0.0, "reorder_copies": 0,
                       "rows_peak": 0}

    def execute(self, plan: Plan) -> Sampled:
        """Run one step.

        Args:
            plan: the scheduler's plan.

        Returns:
            The next token and its probability for each decoding slot (0..decode-1, then each
            join's rows), and the prefill items that raised (their request's error, not the
            step's: the rest of the plan still runs).

        Raises:
            Exception: the batched step failed (every row of it is lost).
        """
        failed: dict[int, BaseException] = {}
        last: dict[int, np.ndarray] = {}  # prefill item -> logits of its last position
        wanted = {j.prefill for j in plan.joins}
        index = 0
        for kind, a, b in plan.work:
            if kind == "prefill":
                try:
                    logits = self.runner.prefill(self.cache, a, b)
                    if index in wanted:
                        last[index] = logits[-1]
                except Exception as err:  # noqa: BLE001 - this prompt's error, not the step's
                    failed[index] = err
                index += 1
            elif kind == "move":
                self._move(a, b)
            elif kind == "copy":
                self.cache.copy(a, b)
            elif kind == "reorder":
                self._reorder(a, b)
            else:
                self._clear(a)
        outs = []
        if plan.decode:
            tick = time.perf_counter()
            outs.append(self.runner.step(self.cache, self.tokens[:plan.decode]))
            self.timing["forward_s"] += time.perf_counter() - tick
        lost = []  # slots of rows whose prompt failed: never drawn
        for join in plan.joins:
            self._start(join)
            width = slots_of(join.params)
            logits = last.get(join.prefill)
            if logits is None:
                lost += range(join.first, join.first + width)
                logits = np.zeros(outs[0].shape[-1] if outs else self.vocab_size, dtype=np.float32)
            outs.append(np.repeat(logits[None], width, axis=0))
        sampled = self._draw(outs, plan.decode + sum(slots_of(j.params) for j in plan.joins), lost)
        sampled.failed = failed
        return sampled

    def _draw(self, outs: list[np.ndarray], total: int, lost: list[int]) -> Sampled:
        """The next token of slots 0..total-1 from their logits (`outs`, in slot order), but
        for the `lost` slots (token -1)."""
        if not total:
            return Sampled(np.zeros(0, np.int64), np.zeros(0))
        logits = outs[0] if len(outs) == 1 else np.concatenate(outs)  # one array needs no copy
        tick = time.perf_counter()
        beams, candidates = [], None
        if self._beam_slots or self._asking:
            tokens, probs, beams, candidates = self._draw_explored(logits, total, set(lost))
        elif not lost:
            tokens, probs = select_next(logits, self.params[:total], self.rngs[:total], self.seen[:total])
        else:
            rows = sorted(set(range(total)) - set(lost))
            tokens, probs = np.full(total, -1, dtype=np.int64), np.zeros(total)
            if rows:
                tokens[rows], probs[rows] = select_next(
                    logits[rows], [self.params[i] for i in rows], [self.rngs[i] for i in rows],
                    [self.seen[i] for i in rows])
        self.timing["sample_s"] += time.perf_counter() - tick
        self.timing["rows_peak"] = max(self.timing["rows_peak"], total)
        self.tokens[:total] = tokens
        for slot, mask in enumerate(self.seen[:total]):
            if mask is not None and tokens[slot] >= 0:
                mask[tokens[slot]] = True
        return Sampled(tokens, probs, beams=beams, candidates=candidates)

    def _draw_explored(self, logits: np.ndarray, total: int, lost: set[int]) -> tuple:
        """`_draw` with beam rows or candidates: the other rows through `select_next`, each beam
        row through its search, candidates for the rows that asked.

        Returns:
            (tokens, probs, [BeamStep, ...], per-slot Candidates or None).
        """
        tokens, probs = np.full(total, -1, dtype=np.int64), np.zeros(total)
        candidates = [None] * total if self._asking else None
        plain = [s for s in range(total) if s not in self._beam_slots and s not in lost]
        if plain:
            asking = [j for j, s in enumerate(plain) if s in self._asking]
            out = select_next(logits[plain], [self.params[s] for s in plain],
                              [self.rngs[s] for s in plain], [self.seen[s] for s in plain],
                              keep_warped=bool(asking))
            tokens[plain], probs[plain] = out[0], out[1]
            for k in sorted({self.k[plain[j]] for j in asking}):
                rows = [j for j in asking if self.k[plain[j]] == k]
                found = row_candidates(logits[plain][rows], out[2][rows],
                                       [self.params[plain[j]].greedy for j in rows], out[0][rows], k)
                for j, c in zip(rows, found, strict=True):
                    candidates[plain[j]] = c
        groups = {id(self.beam[s]): self.beam[s] for s in sorted(self._beam_slots) if s < total}
        beams = []
        for group in groups.values():
            if lost.intersection(group.slots):
                continue  # its prompt failed: the scheduler ends it
            step = group.step(logits[group.slots])
            tokens[group.slots], probs[group.slots] = step.tokens, step.probs
            beams.append(step)
        return tokens, probs, beams, candidates

    def _start(self, join) -> None:
        """Give each of a join's rows its sampler state, in its slot (a beam row: its N)."""
        slot = join.first
        for params in join.params:
            width = params.num_beams
            group = None
            if params.beam:
                group = BeamRows(params, range(slot, slot + width), join.max_new_tokens,
                                 self.eos_ids, join.candidates)
            for s in range(slot, slot + width):
                self._set(s, params, group, join)
            slot += width

    def _set(self, slot: int, params, group, join) -> None:
        self.params[slot], self.beam[slot], self.k[slot] = params, group, join.candidates
        self.rngs[slot] = np.random.default_rng(params.seed)
        self.seen[slot] = None
        if needs_seen(params):
            # The penalty covers the prompt too, as in transformers.
            self.seen[slot] = np.zeros(self.vocab_size, dtype=bool)
            self.seen[slot][join.prompt_ids] = True
        (self._beam_slots.add if group else self._beam_slots.discard)(slot)
        (self._asking.add if join.candidates and not group else self._asking.discard)(slot)

    def _reorder(self, slots, parents) -> None:
        """A beam row's slots after its step: each new beam in the slot its parent held, extra
        children copied into the slots of beams that died (only their filled positions)."""
        tick = time.perf_counter()
        group = self.beam[slots[0]]
        new_slots, copies = group.reorder(slots, parents)
        for src, dst in copies:
            self.cache.copy(src, dst)
        self.tokens[new_slots] = group.last_tokens()
        self.timing["reorder_copies"] += len(copies)
        self.timing["reorder_s"] += time.perf_counter() - tick

    def _move(self, src: int, dst: int) -> None:
        """Move a slot's cache and its row's sampler state; `src` becomes free."""
        self.cache.move(src, dst)
        if src != dst:
            self.tokens[dst] = self.tokens[src]
            group = self.beam[src]
            if group is not None:
                group.slots = [dst if s == src else s for s in group.slots]
            for state in (self.params, self.rngs, self.seen, self.beam):
                state[dst], state[src] = state[src], None
            self.k[dst], self.k[src] = self.k[src], 0
            for marked in (self._beam_slots, self._asking):
                (marked.add if src in marked else marked.discard)(dst)
                marked.discard(src)

    def _clear(self, slot: int) -> None:
        self.cache.clear(slot)
        for state in (self.params, self.rngs, self.seen, self.beam):
            state[slot] = None
        self.k[slot] = 0
        self._beam_slots.discard(slot)
        self._asking.discard(slot)
