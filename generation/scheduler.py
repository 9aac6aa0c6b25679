"""Who runs this step: waiting, prefilling and running requests, and the slots their rows hold.

The shape of vLLM's v1 scheduler. Requests wait in `waiting`; each step `schedule()` admits
them within the row budget, picks this step's prompt chunks (within the prefill budget while
other rows decode) and returns a `Plan`; the executor runs it (the model call); then
`update_from_output()` takes the sampled tokens, decides which rows end (EOS, length), retires
them at once (the last slots move into the holes, so decoding rows stay packed in slots
0..B-1) and returns each request's messages. The scheduler never calls the model and never
sees logits or text: it knows requests and slots; the executor knows tensors.
"""

from __future__ import annotations

import collections
import itertools
import time

from .request import Join, Plan, Request, RowUpdate, Sampled, slots_of

# Prompt tokens per prefill call: a constant of the model, so a prompt is cut into the same
# chunks whoever serves it (Engine.stream, the app's loop under any load) and its cache holds
# the same numbers; the per-step budget only decides how many of its chunks run in one step.
# A decode graph prefilling itself keeps 64-token chunks (short steps for the rows decoding
# beside a long prompt); a prefill graph's int8 GEMMs gain much from longer ones: on a 2-core
# Zen 5, 125M, a 200-token prompt took 98 ms in 64-token calls and 43 ms in one, a 1000-token
# prompt 432 / 285 / 270 / 297 ms in chunks of 64 / 128 / 256 / 512 (bench/results/
# prefill_gpt-neo-125m_p*_zen5_quiet.json), so it takes chunks of PREFILL_GRAPH_CHUNK.
PREFILL_CHUNK = 64
PREFILL_GRAPH_CHUNK = 256


def prefill_chunk(prefill_graph: bool) -> int:
    """Prompt tokens per prefill call for a runner with (or without) a prefill graph."""
    return PREFILL_GRAPH_CHUNK if prefill_graph else PREFILL_CHUNK


class Scheduler:
    """Decides each step's work for the requests of one loop.

    Args:
        max_rows: rows decoding or prefilling at once; slots 0..max_rows-1 hold them and slot
            max_rows is a spare that no row ever holds.
        eos_ids: tokens that end a row.
        ragged: the runner steps slots of different lengths together (else requests are
            served one at a time).
        chunked: the runner takes a prompt in several pieces (else in one).
        prefill_graph: the runner prefills with a graph of its own: chunks of
            PREFILL_GRAPH_CHUNK tokens, else of PREFILL_CHUNK.
        prefill_budget: prompt tokens prefilled per step while other rows decode, in whole
            chunks (default: one chunk).
    """

    def __init__(self, max_rows: int, eos_ids, *, ragged: bool, chunked: bool,
                 prefill_graph: bool = False, prefill_budget: int | None = None):
        self.max_rows = max_rows
        self.spare = max_rows
        self.ragged = ragged
        self.chunk = prefill_chunk(prefill_graph) if chunked else None
        self.budget = max(1, prefill_budget or self.chunk or PREFILL_CHUNK)
        self.waiting: collections.deque[Request] = collections.deque()
        self.prefilling: list[Request] = []
        self.running: list[Request] = []
        self.slots: list[tuple[Request, int]] = []  # the (request, row) in each decoding slot
        self._eos = frozenset(eos_ids)
        self._work: list = []  # cache operations decided since the last plan, for the next

    @property
    def rows_in_flight(self) -> int:
        """Rows decoding or being prefilled."""
        return len(self.slots) + sum(slots_of(r.prepared.params) for r in self.prefilling)

    def schedule(self) -> Plan:
        """Admit waiting requests within the budgets and choose this step's prefill work.

        Returns:
            The plan: the cache operations decided since the last step, the prompt chunks (a
            prompt that completes has its rows placed in the next decoding slots, after those
            that step now), and how many slots step.
        """
        plan = Plan(work=self._work, decode=len(self.slots))
        self._work = []
        while self.waiting and (self.ragged or not (self.running or self.prefilling)):
            req = self.waiting[0]
            if self.rows_in_flight + slots_of(req.prepared.params) > self.max_rows:
                break  # first come, first served: nobody overtakes the head of the queue
            self.waiting.popleft()
            plan.admitted += 1
            req.generated = [0] * len(req.prepared.params)
            req.unfinished = len(req.generated)
            req.stage = self._free_slot()
            self.prefilling.append(req)
        # Chunk boundaries depend on the request alone (a row's numbers must not depend on
        # its neighbours); the budget only decides how many chunks run this step. Shortest
        # remaining prompt first, so a new short request starts within a step.
        budget = self.budget if self.slots and self.chunk else float("inf")
        for req in sorted(self.prefilling, key=lambda r: len(r.prepared.ids) - r.prefilled):
            ids = req.prepared.ids
            while budget > 0 and req.prefilled < len(ids):
                piece = ids[req.prefilled:req.prefilled + (self.chunk or len(ids))]
                plan.work.append(("prefill", req.stage, piece))
                plan.owners.append(req)
                req.prefilled += len(piece)
                budget -= len(piece)
                if req.prefilled == len(ids):
                    plan.joins.append(Join(len(plan.owners) - 1, len(self.slots), req.prepared.params,
                                           ids, req.prepared.max_new_tokens, req.prepared.candidates))
                    plan.work += self._join(req)
        return plan

    def update_from_output(self, plan: Plan, sampled: Sampled) -> list[tuple[Request, tuple]]:
        """Take each row's token, end the rows and requests that finished, retire their slots.

        Args:
            plan: the plan the executor ran.
            sampled: what it returned (one token per decoding slot, in slot order).

        Returns:
            (request, message) pairs, in order: ("step", [RowUpdate, ...]) with what each of a
            request's rows gained, then ("end", "done") or ("error", exception) when it ended.
        """
        messages = []
        for index, error in sampled.failed.items():
            messages += self._end(plan.owners[index], error=error, retire=False)
        clock = time.perf_counter()
        tokens, probs = sampled.tokens.tolist(), sampled.probs.tolist()
        cands = sampled.candidates
        by_request: dict[Request, list[RowUpdate]] = {}
        gone = []
        beam_slots = {s for step in sampled.beams for s in step.slots} if sampled.beams else ()
        for slot, (req, row) in enumerate(self.slots):
            if req.ended:  # its prefill failed in this step
                gone.append(slot)
                continue
            if slot in beam_slots:
                continue
            token = tokens[slot]
            req.generated[row] += 1
            reason = "eos" if token in self._eos else (
                "length" if req.generated[row] == req.prepared.max_new_tokens else None)
            if reason:
                req.unfinished -= 1
                gone.append(slot)
            update = RowUpdate(row, token, probs[slot], reason, clock - req.prepared.start,
                               cands[slot] if cands else None)
            by_request.setdefault(req, []).append(update)
        for step in sampled.beams:
            req, row = self.slots[step.slots[0]]
            if not req.ended:
                by_request.setdefault(req, []).append(self._beam_update(req, row, step, gone, clock))
        for req, updates in by_request.items():
            messages.append((req, ("step", updates)))
            if not req.unfinished:
                messages += self._end(req, "done", retire=False)
        self._retire(gone)
        return messages

    def _beam_update(self, req: Request, row: int, step, gone: list[int], clock: float) -> RowUpdate:
        """A beam row's update for its step: the reorder of its slots for the next plan, or
        (when its search is done) its end and the retirement of its slots."""
        req.generated[row] += 1
        reason, hypotheses = None, None
        if step.done:
            hypotheses = step.hypotheses
            best = hypotheses[0][0]
            reason = "eos" if best and best[-1] in self._eos else "length"
            req.unfinished -= 1
            gone += step.slots
        else:
            # Before this step's retirements: the reorder names the slots as they are now.
            self._work.append(("reorder", step.slots, step.parents))
        return RowUpdate(row, step.tokens[0], step.probs[0], reason, clock - req.prepared.start,
                         None, (step.parents, step.tokens, step.probs), hypotheses)

    def abort(self, req: Request, reason: str = "done",
              error: BaseException | None = None) -> list[tuple[Request, tuple]]:
        """End a request wherever it is (waiting, prefilling or decoding) and free its slots.

        Returns:
            Its last message: [(req, ("end", reason))], or ("error", error) with an error;
            [] when it had ended already.
        """
        if req in self.waiting:
            self.waiting.remove(req)
        return self._end(req, reason, error)

    def _join(self, req: Request) -> list[tuple]:
        """Put a prefilled request's rows in the next decoding slots; the cache operations that
        copy its prompt there."""
        first, n = len(self.slots), slots_of(req.prepared.params)
        targets = range(first, first + n)
        # The prompt steps aside into the spare slot (no row ever holds it), so other prompts
        # parked where these rows go can always be moved out of the way first.
        work = [("move", req.stage, self.spare)]
        self.prefilling.remove(req)
        req.stage = None
        for other in self.prefilling:
            if other.stage in targets:
                slot = self._free_slot(exclude=targets)
                work.append(("move", other.stage, slot))
                other.stage = slot
        work.append(("move", self.spare, first))
        rows = [(i, p.num_beams) for i, p in enumerate(req.prepared.params)]
        self.slots += [(req, i) for i, width in rows for _ in range(width)]
        # A beam row's first slot gets the prompt; its first reorder fills the others.
        starts = itertools.accumulate([first] + [width for _, width in rows[:-1]])
        work += [("copy", first, slot) for slot in list(starts)[1:]]
        self.running.append(req)
        return work
        self.running.append(req)
        return work

    def _retire(self, freed: list[int]) -> None:
        """Free slots: the last live slots move into the holes (applied with the next plan)."""
        if not freed:
            return
        gone = set(freed)
        keep = len(self.slots) - len(gone)
        holes = [s for s in freed if s < keep]
        movers = [s for s in range(keep, len(self.slots)) if s not in gone]
        for hole, src in zip(holes, movers, strict=True):
            self._work.append(("move", src, hole))
            self.slots[hole] = self.slots[src]
        self._work += [("clear", slot, None) for slot in range(keep, len(self.slots)) if slot in gone]
        del self.slots[keep:]

    def _end(self, req: Request, reason: str = "done", error: BaseException | None = None,
             retire: bool = True) -> list[tuple[Request, tuple]]:
        """Mark the request ended and free its slots (`retire=False`: the caller retires its
        decoding rows, as `update_from_output` does for all finished rows at once)."""
        if req.ended:
            return []
        req.ended = True
        if req in self.prefilling:
            self.prefilling.remove(req)
            if req.stage is not None:
                self._work.append(("clear", req.stage, None))
        if req in self.running:
            self.running.remove(req)
        if retire:
            self._retire([s for s, (r, _) in enumerate(self.slots) if r is req])
        return [(req, ("error", error) if error is not None else ("end", reason))]

    def _free_slot(self, exclude=()) -> int:
        """The highest slot neither decoding nor holding a prompt (prompts park at the top)."""
        used = {r.stage for r in self.prefilling} | set(exclude)
        return next(s for s in range(self.max_rows - 1, len(self.slots) - 1, -1) if s not in used)
