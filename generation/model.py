"""The loaded model: its runner, tokenizer and config, and the checks that turn a request into
what a decoding loop runs (`prepare` → `request.Prepared`)."""

from __future__ import annotations

import numbers
import os
import time
from collections.abc import Sequence

from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

from .configs import ModelConfig, ModelFileError, load_tokenizer, read_config
from .files import resolve
from .request import Prepared
from .runners.base import Runner
from .runners.decode_graph import DecodeRunner
from .runners.optimum import OptimumRunner, map_io
from .runners.pad_probe import probe_single_row
from .runners.session import create_session
from .sampling.params import SamplingParams, prompt_problems


class Model:
    """A runner (the ONNX session and its cache operations), its tokenizer and its config."""

    def __init__(self, runner: Runner, tokenizer, config: ModelConfig, info: dict):
        self._runner = runner
        self._tokenizer = tokenizer
        self._config = config
        self.info = info

    @classmethod
    def load(cls, model: str | os.PathLike, precision: str | None = None,
             provider: str | None = None):
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
            The loaded model (an instance of the class it is called on, e.g. Engine).

        Raises:
            ValueError: a bad argument, or a model that cannot be found or used.
        """
        if provider not in (None, "cpu", "cuda"):
            raise ValueError(f"provider must be 'cpu', 'cuda' or None (auto), got {provider!r}")
        # The decode graph is CPU-only (its fp32 attention kernel has no CUDA version): a CUDA
        # request runs optimum's graph.
        files = resolve(model, precision, use_decode=provider != "cuda")
        config = read_config(files.meta_dir)
        tokenizer = load_tokenizer(files.meta_dir)
        if files.decode is not None:
            session, used = _open_session(files.onnx, "cpu")
            prefill = None if files.prefill is None else _open_session(files.prefill, "cpu")[0]
            runner = DecodeRunner(session, used, prefill)
            probe = probe_single_row(runner)
        else:
            probe = None
            session, used = _open_session(files.onnx, provider)
            runner = OptimumRunner(session, used, map_io(session, config.heads, config.hidden))
            if used == "cuda" and provider is None:
                runner = _working_or_cpu(runner, files, config)
        info = {
            "model": str(model),
            "precision": files.precision,
            "provider": runner.provider,
            "onnx_file": str(files.onnx),
            "graph": "optimum" if files.decode is None else "decode",
            # The graph that prefills prompts (None: the one that steps).
            "prefill_file": None if files.prefill is None else str(files.prefill),
            # True: a lone row matched the batched kernel bitwise here, so the quantized graph
            # runs unpadded; False: it differed, the padding stays; None: no padding to decide.
            "single_row_probe": probe,
            "min_rows": None if probe is None else int(runner.min_rows[0]),
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
        """The session and its cache operations (what a decoding loop drives)."""
        return self._runner

    @property
    def tokenizer(self):
        """The `tokenizers.Tokenizer` of the model."""
        return self._tokenizer

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` (no special tokens added)."""
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def prepare(self, prompt: str | None, params: Sequence[SamplingParams], max_new_tokens: int = 64,
                token_ids: Sequence[int] | None = None, candidates: int = 0) -> Prepared:
        """Check a request and turn it into what a decoding loop runs (see `Engine.stream`).

        Args:
            prompt: the text to continue, or None when `token_ids` is given.
            params: one SamplingParams per output row.
            max_new_tokens: most new tokens per row, 1 .. context - 1.
            token_ids: the prompt as token ids (instead of `prompt`).
            candidates: K, the candidates recorded per emitted token (0 = off; K beyond the
                vocabulary is clamped to it).

        Returns:
            The prompt ids cut to fit the context, the params, and the request's start time.

        Raises:
            ValueError: an empty prompt or bad ids, no params, bad params, a bad
                max_new_tokens or a bad candidates, listing every problem.
        """
        start = time.perf_counter()  # the request's clock includes tokenization
        ids, params = self._validated(prompt, token_ids, params, max_new_tokens, candidates)
        truncated = max(0, len(ids) - (self.context_size - max_new_tokens))
        return Prepared(ids[truncated:], params, max_new_tokens, truncated, start,
                        min(candidates, self.vocab_size))

    def _validated(self, prompt, token_ids, params, max_new_tokens,
                   candidates=0) -> tuple[list[int], list[SamplingParams]]:
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
        if isinstance(candidates, bool) or not isinstance(candidates, numbers.Integral) or candidates < 0:
            issues.append(f"candidates must be an integer >= 0 (0 = off), got {candidates!r}")
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
        session, used = _open_session(files.onnx, "cpu")
        return OptimumRunner(session, used, map_io(session, config.heads, config.hidden))


# What ONNX Runtime raises for a file it cannot load (a truncated or foreign file, a missing or
# short external-data file, a graph that does not check).
_LOAD_ERRORS = (ort_errors.InvalidProtobuf, ort_errors.Fail, ort_errors.NoSuchFile,
                ort_errors.InvalidGraph, ort_errors.InvalidArgument, ort_errors.NoModel)


def _open_session(path, provider):
    """`create_session`, with a file ONNX Runtime cannot load told as a ModelFileError."""
    try:
        return create_session(str(path), provider)
    except _LOAD_ERRORS as err:
        detail = " ".join(str(err).split())[:300]
        raise ModelFileError(f"{path} cannot be loaded by ONNX Runtime (truncated or corrupted? "
                             f"re-export or re-download it): {detail}") from None
