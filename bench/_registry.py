"""The benchmark's registry: what a runner receives (BenchModel, BenchCase), what it returns
(Row), how rows are timed (`measure`), and `BACKENDS`, the rows `bench/decode.py` runs."""

from __future__ import annotations

import inspect
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class BenchModel:
    """The model under test: its PyTorch dir, its export dir, and a cache for loaded objects."""

    name: str
    torch_dir: Path
    onnx_dir: Path
    threads: int
    tokenizer: object = None
    config: dict = field(default_factory=dict)  # config.json of the PyTorch model
    loaded: dict = field(default_factory=dict)

    def cached(self, key: str, factory: Callable[[], object]) -> object:
        """Load once per benchmark run (loading is not what is measured)."""
        if key not in self.loaded:
            self.loaded[key] = factory()
        return self.loaded[key]


@dataclass
class BenchCase:
    """One measurement: `prompts` (batch rows of equal length) and how many tokens to add."""

    prompts: list[list[int]]
    new_tokens: int
    repeats: int = 1

    @property
    def batch(self) -> int:
        return len(self.prompts)


@dataclass
class Row:
    backend: str
    batch: int
    prompt_tokens: int
    new_tokens: int
    ttft_ms: float
    decode_tok_s: float  # all rows together
    ms_per_step: float   # one decoding step for the whole batch
    prefill_gflop_s: float = 0.0  # the prompt's model FLOPs (see decode.prefill_flops) / TTFT


class Skip(Exception):
    """A runner cannot run here (missing file, no CUDA); the row is left out with a reason."""


Runner = Callable[[BenchModel, BenchCase], Row]
BACKENDS: dict[str, Runner] = {}


def backend(name: str) -> Callable[[Runner], Runner]:
    """Register a runner under `name` (the order of registration is the table's order)."""
    def register(fn: Runner) -> Runner:
        BACKENDS[name] = fn
        return fn
    return register


def measure(name: str, run: Callable[..., None], case: BenchCase) -> Row:
    """Time a runner's `run` (generate n new tokens for every prompt), median of case.repeats.

    Preferred: `run(n, tick)` calls `tick()` once per decoding step, as soon as that step's
    tokens exist. Then one run gives both numbers: TTFT = first tick − start, and decode
    tokens/s = batch × (n − 1) / (last tick − first tick).
    Also accepted: `run(n)` without ticks; then TTFT is a 1-token run and the decode time is
    the difference to an n-token run (noisier: two runs on a loaded machine).
    """
    ticked = len(inspect.signature(run).parameters) >= 2
    run(2, lambda: None) if ticked else run(2)  # warm-up: first-call allocations, kernels
    firsts, steps = [], []
    for _ in range(case.repeats):
        if ticked:
            stamps: list[float] = []
            start = time.perf_counter()
            run(case.new_tokens, lambda stamps=stamps: stamps.append(time.perf_counter()))
            if len(stamps) != case.new_tokens:
                raise RuntimeError(f"{name}: {len(stamps)} ticks for {case.new_tokens} tokens")
            firsts.append(stamps[0] - start)
            steps.append((stamps[-1] - stamps[0]) / max(case.new_tokens - 1, 1))
        else:
            start = time.perf_counter()
            run(1)
            firsts.append(time.perf_counter() - start)
            start = time.perf_counter()
            run(case.new_tokens)
            full = time.perf_counter() - start
            steps.append(max(full - firsts[-1], 1e-9) / max(case.new_tokens - 1, 1))
    first, per_step = statistics.median(firsts), statistics.median(steps)
    return Row(name, case.batch, len(case.prompts[0]), case.new_tokens, round(first * 1e3, 2),
               round(case.batch / per_step, 2), round(per_step * 1e3, 3))


class _Ticks:
    """A transformers streamer that only calls `tick()` per generated step (not the prompt)."""

    def __init__(self, tick: Callable[[], None]):
        self.tick, self.prompt_seen = tick, False

    def put(self, value) -> None:
        if self.prompt_seen:
            self.tick()
        self.prompt_seen = True

    def end(self) -> None:
        pass
