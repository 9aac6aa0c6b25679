"""The decoding engine: one prompt, N sampling settings, one batched forward per step."""

from __future__ import annotations

import numbers
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .model import ModelConfig, load_tokenizer, read_config, resolve
from .params import RowResult, SamplingParams, StepUpdate, prompt_problems
from .runners.base import Runner
from .runners.decode_graph import DecodeRunner
from .runners.optimum import OptimumRunner, map_io
from .runners.session import create_session
from .score import ScoreResult, score_tokens


@dataclass(frozen=True)
class Prepared:
    """A checked request: prompt ids (cut from the left to fit), params, and when it started."""

    ids: list[int]
    params: list[SamplingParams]
    max_new_tokens: int
    truncated: int
    start: float


class Engine:
    """A loaded model that streams continuations for several sampling settings side by side.

    Rows share the prompt, so the prompt is run once and its cache copied to every row; after
    that each step is one batched forward for all unfinished rows. Each row has its own
    warpers, random generator and EOS stop; finished rows leave the batch.
    """

    def __init__(self, runner: Runner, tokenizer, config: ModelConfig, info: dict):
        self._runner = runner
        self._tokenizer = tokenizer
        self._config = config
        self.info = info

    @classmethod
    def load(cls, model: str | os.PathLike, precision: str | None = None,
             provider: str | None = None) -> Engine:
        """Load a model directory or Hub repo.

        Args:
            model: an export directory, a directory or Hub repo with the ONNX files in `onnx/`,
                or a Hub repo id (downloaded with snapshot_download).
            precision: "fp32", "int8" or "int4". With a decode graph (decode.json), None takes
                its default (the fastest that passed the export's gate); with optimum's files
                alone, int8 when present, else fp32.
            provider: "cpu", "cuda", or None (CUDA only where a GPU really works). The decode
                graph runs on the CPU; "cuda" runs optimum's graph.

        Returns:
            The engine.

        Raises:
            ValueError: a bad argument, or a model that cannot be found or used.
        """
        if provider not in (None, "cpu", "cuda"):
            raise ValueError(f"provider must be 'cpu', 'cuda' or None (auto), got {provider!r}")
        # The decode graph is CPU-only (its fp32 attention kernel has no CUDA version): a CUDA
        # request runs optimum's graph.
        files = resolve(model, precision, use_decode=provider != "cuda")
        config = read_config(files)
        tokenizer = load_tokenizer(files)
        if files.decode is not None:
            session, used = create_session(str(files.onnx), "cpu")
            runner = DecodeRunner(session, used)
        else:
            session, used = create_session(str(files.onnx), provider)
            runner = OptimumRunner(session, used, map_io(session, config.heads, config.hidden))
            if used == "cuda" and provider is None:
                runner = _working_or_cpu(runner, files, config)
        info = {
            "model": str(model),
            "precision": files.precision,
            "provider": runner.provider,
            "onnx_file": str(files.onnx),
            "graph": "optimum" if files.decode is None else "decode",
            "parameters": config.parameters,
            "context": config.context,
            "vocab_size": config.vocab_size,
            "layers": runner.layers,
        }
        return cls(runner, tokenizer, config, info)

    @property
    def context_size(self) -> int:
        """Maximum tokens (prompt + new) the model attends to."""
        return self._config.context

    @property
    def default_params(self) -> SamplingParams:
        """The settings generation_config.json asks for (greedy unless it samples)."""
        return self._config.default_params

    @property
    def default_max_new_tokens(self) -> int:
        """max_new_tokens from generation_config.json, else 64."""
        return int(self._config.default_max_new_tokens or 64)

    @property
    def eos_ids(self) -> tuple[int, ...]:
        """Token ids that end a row."""
        return self._config.eos_ids

    @property
    def vocab_size(self) -> int:
        """Rows of the logits (the model's vocabulary, which may exceed the tokenizer's)."""
        return self._config.vocab_size

    @property
    def hidden_size(self) -> int:
        """Width of the model (heads × head_dim), which sizes the cache of a row."""
        return self._config.hidden

    @property
    def runner(self) -> Runner:
        """The session and its cache operations (what a scheduler drives)."""
        return self._runner

    @property
    def tokenizer(self):
        """The `tokenizers.Tokenizer` of the model."""
        return self._tokenizer

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` (no special tokens added)."""
        return self._tokenizer.encode(text, add_special_tokens=False).ids

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
        if ids and max(ids) >= self._config.vocab_size:
            issues.append("the tokenizer produced ids beyond the model's vocabulary")
        if issues:
            raise ValueError("\n".join(issues))
        return score_tokens(self._runner, ids, self.eos_ids[0], self.context_size)

    def generate(self, prompt: str, params: Sequence[SamplingParams],
                 max_new_tokens: int = 64) -> list[RowResult]:
        """Run `stream` to the end.

        Returns:
            One finished RowResult per params entry.
        """
        rows: list[RowResult] = []
        for update in self.stream(prompt, params, max_new_tokens):
            rows = update.rows
        return rows

    def stream(self, prompt: str, params: Sequence[SamplingParams],
               max_new_tokens: int = 64) -> Iterator[StepUpdate]:
        """Generate continuations of `prompt`, one row per SamplingParams, step by step.

        Args:
            prompt: the text to continue; cut from the left when longer than
                context - max_new_tokens tokens (reported as `prompt_truncated`).
            params: one SamplingParams per output row.
            max_new_tokens: most new tokens per row, 1 .. context - 1.

        Returns:
            An iterator of StepUpdate, one per step; the RowResult objects are the same each
            step and updated in place.

        Raises:
            ValueError: (at once, before any work) an empty prompt, no params, bad params or a
                bad max_new_tokens, listing every problem.
        """
        return self._run(self.prepare(prompt, params, max_new_tokens))

    def stream_tokens(self, token_ids: Sequence[int], params: Sequence[SamplingParams],
                      max_new_tokens: int = 64) -> Iterator[StepUpdate]:
        """`stream` for a prompt given as token ids (what benchmarks and tests feed).

        Raises:
            ValueError: empty or out-of-vocabulary ids, or any problem `stream` reports.
        """
        ids = [] if token_ids is None else token_ids  # None is bad ids here, not "no ids"
        return self._run(self.prepare(None, params, max_new_tokens, ids))

    def prepare(self, prompt: str | None, params: Sequence[SamplingParams], max_new_tokens: int = 64,
                token_ids: Sequence[int] | None = None) -> Prepared:
        """Check a request and turn it into what a decoding loop runs (see `stream`).

        Args:
            prompt: the text to continue, or None when `token_ids` is given.
            params, max_new_tokens: as for `stream`.
            token_ids: the prompt as token ids (instead of `prompt`).

        Returns:
            The prompt ids cut to fit the context, the params, and the request's start time.

        Raises:
            ValueError: any problem `stream` or `stream_tokens` reports.
        """
        start = time.perf_counter()  # the request's clock includes tokenization
        ids, params = self._validated(prompt, token_ids, params, max_new_tokens)
        truncated = max(0, len(ids) - (self.context_size - max_new_tokens))
        return Prepared(ids[truncated:], params, max_new_tokens, truncated, start)

    def _validated(self, prompt, token_ids, params, max_new_tokens) -> tuple[list[int], list[SamplingParams]]:
        """The prompt's ids and the params as a list; raises ValueError listing every problem."""
        if token_ids is None:
            issues = prompt_problems(prompt)
            ids = self.encode(prompt) if not issues else []
            if not issues and not ids:
                issues.append("prompt produced no tokens")
            if ids and max(ids) >= self._config.vocab_size:
                issues.append("the tokenizer produced ids beyond the model's vocabulary")
        else:
            ids = [int(t) for t in token_ids] if _all_ints(token_ids) else []
            issues = [] if ids and min(ids) >= 0 and max(ids) < self._config.vocab_size else [
                f"token_ids must be a non-empty list of ids in [0, {self._config.vocab_size})"]
        return ids, self._check(issues, params, max_new_tokens)

    def _check(self, issues: list[str], params, max_new_tokens) -> list[SamplingParams]:
        """Add the problems of params and max_new_tokens to `issues`; raise if there are any."""
        params = list(params) if isinstance(params, (list, tuple)) else params
        if not isinstance(params, list) or not params:
            issues.append("params must be a non-empty list of SamplingParams (one per row)")
        else:
            for i, p in enumerate(params):
                if not isinstance(p, SamplingParams):
                    issues.append(f"params[{i}] must be a SamplingParams, got {type(p).__name__}")
                else:
                    issues += [f"params[{i}]: {m}" for m in p.problems()]
        limit = self.context_size - 1
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) \
                or not 1 <= max_new_tokens <= limit:
            issues.append(f"max_new_tokens must be an integer in [1, {limit}], got {max_new_tokens!r}")
        if issues:
            raise ValueError("\n".join(issues))
        return params

    def _run(self, prepared: Prepared) -> Iterator[StepUpdate]:
        """Decode one request as a batch of one in a scheduler of its own (the app's loop, sized
        to this request: its rows, its prompt + max_new_tokens), driven on the caller's thread."""
        from .scheduler import Scheduler  # the scheduler drives an Engine: imported late

        scheduler = Scheduler(self, max_rows=len(prepared.params), queue_size=1, time_limit_s=None,
                              capacity=len(prepared.ids) + prepared.max_new_tokens, threaded=False)
        yield from scheduler.drive(prepared)


def _all_ints(values) -> bool:
    try:
        return len(values) > 0 and all(isinstance(v, numbers.Integral) for v in values)
    except TypeError:
        return False


def _working_or_cpu(runner: Runner, files, config) -> Runner:
    """Run one token on CUDA; on any failure fall back to a CPU session quietly."""
    try:
        runner.prefill(runner.new_cache(1, 1), 0, [0])
        return runner
    except Exception:  # noqa: BLE001 - any CUDA failure means: use the CPU
        session, used = create_session(str(files.onnx), "cpu")
        return OptimumRunner(session, used, map_io(session, config.heads, config.hidden))
