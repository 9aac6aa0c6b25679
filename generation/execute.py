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

from .request import Plan, Sampled
from .runners.base import Runner
from .sampling.pipeline import needs_seen, select_next


class Executor:
    """Runs plans on one cache of `slots` slots of up to `capacity` tokens each.

    Attributes:
        runner: the model call.
        cache: the runner's cache.
        timing: seconds spent in the batched steps ("forward_s") and in the sampler
            ("sample_s"), and the most rows drawn in one step ("rows_peak").
    """

    def __init__(self, runner: Runner, slots: int, capacity: int, vocab_size: int):
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
        self.timing = {"forward_s": 0.0, "sample_s": 0.0, "rows_peak": 0}

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
            logits = last.get(join.prefill)
            if logits is None:
                lost += range(join.first, join.first + len(join.params))
                logits = np.zeros(outs[0].shape[-1] if outs else self.vocab_size, dtype=np.float32)
            outs.append(np.repeat(logits[None], len(join.params), axis=0))
        sampled = self._draw(outs, plan.decode + sum(len(j.params) for j in plan.joins), lost)
        sampled.failed = failed
        return sampled

    def _draw(self, outs: list[np.ndarray], total: int, lost: list[int]) -> Sampled:
        """The next token of slots 0..total-1 from their logits (`outs`, in slot order), but
        for the `lost` slots (token -1)."""
        if not total:
            return Sampled(np.zeros(0, np.int64), np.zeros(0))
        logits = outs[0] if len(outs) == 1 else np.concatenate(outs)  # one array needs no copy
        tick = time.perf_counter()
        if not lost:
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
        return Sampled(tokens, probs)

    def _start(self, join) -> None:
        """Give each of a join's rows its sampler state, in its slot."""
        for slot, params in enumerate(join.params, start=join.first):
            self.params[slot] = params
            self.rngs[slot] = np.random.default_rng(params.seed)
            self.seen[slot] = None
            if needs_seen(params):
                # The penalty covers the prompt too, as in transformers.
                self.seen[slot] = np.zeros(self.vocab_size, dtype=bool)
                self.seen[slot][join.prompt_ids] = True

    def _move(self, src: int, dst: int) -> None:
        """Move a slot's cache and its row's sampler state; `src` becomes free."""
        self.cache.move(src, dst)
        if src != dst:
            self.tokens[dst] = self.tokens[src]
            for state in (self.params, self.rngs, self.seen):
                state[dst], state[src] = state[src], None

    def _clear(self, slot: int) -> None:
        self.cache.clear(slot)
        for state in (self.params, self.rngs, self.seen):
            state[slot] = None
