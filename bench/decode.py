"""Decode speed: tokens/s (batch 1 and 3) and time to first token, every backend in one run.

    python bench/decode.py --random-init gpt-neo-125m --new-tokens 128
    python bench/decode.py --model FINETUNED_DIR [--onnx-dir EXPORT_DIR] --json out.json

Rows come from the registry `BACKENDS`: name → runner(BenchModel, BenchCase) -> Row. To add
a row (e.g. the project's engine), write one runner and register it:

    @backend("engine int8")
    def engine_int8(model: BenchModel, case: BenchCase) -> Row:
        engine = model.cached("engine int8", lambda: Engine.load(model.onnx_dir, "int8"))
        def run(n, tick):  # generate n new tokens for every row of case.prompts,
            ...            # calling tick() once per decoding step
        return measure("engine int8", run, case)

`measure` takes the time to first token (prefill + first token) and the decode rate
(batch × (n − 1) / time from the first to the last step) from the ticks of one run; a
`run(n)` without ticks is timed by a 1-token run and an n-token run instead. Runners may
raise `Skip` (e.g. a file that is absent). Timings are wall-clock on whatever else runs on
the machine; the JSON records the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _setup  # noqa: E402
from bench._registry import (  # noqa: E402  (re-exported: runners import them from here)
    BACKENDS,
    BenchCase,
    BenchModel,
    Row,
    Runner,
    Skip,
    _Ticks,
    backend,
    measure,
)


def _hf_generate(model, case: BenchCase) -> Callable[[int, Callable[[], None]], None]:
    import torch

    ids = torch.tensor(case.prompts)
    mask = torch.ones_like(ids)
    pad = model.generation_config.eos_token_id
    pad = pad[0] if isinstance(pad, list) else pad

    def run(n: int, tick: Callable[[], None]) -> None:
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                 max_new_tokens=n, min_new_tokens=n, pad_token_id=pad,
                                 streamer=_Ticks(tick))
        assert out.shape == (case.batch, ids.shape[1] + n)
    return run


def _pytorch(label: str, threads: int | None) -> Runner:
    def runner(model: BenchModel, case: BenchCase) -> Row:
        import torch
        from transformers import AutoModelForCausalLM

        torch.set_num_threads(threads or model.threads)
        hf = model.cached("pytorch", lambda: AutoModelForCausalLM.from_pretrained(
            model.torch_dir, attn_implementation="eager", dtype=torch.float32).eval())
        return measure(label, _hf_generate(hf, case), case)
    return runner


backend("pytorch eager")(_pytorch("pytorch eager", None))
# On a CPU shared with other jobs, OpenMP threads wait on each other at every op barrier
# whenever one is descheduled; a single thread shows what eager PyTorch does without that.
backend("pytorch eager 1 thread")(_pytorch("pytorch eager 1 thread", 1))


def _optimum(precision: str, file_name: str) -> Runner:
    def runner(model: BenchModel, case: BenchCase) -> Row:
        import onnxruntime as ort
        import torch
        from optimum.onnxruntime import ORTModelForCausalLM

        if not (model.onnx_dir / file_name).exists():
            raise Skip(f"{model.onnx_dir / file_name} is absent")
        # ONNX Runtime's pool (spinning between runs) owns the cores here; torch only does
        # generate()'s glue. Two pools of `threads` each on 2 cores made every step ~3x slower.
        torch.set_num_threads(1)

        def load():
            options = ort.SessionOptions()
            options.intra_op_num_threads = model.threads
            return ORTModelForCausalLM.from_pretrained(model.onnx_dir, file_name=file_name,
                                                       session_options=options)
        ort_model = model.cached(f"optimum {precision}", load)
        return measure(f"optimum {precision}", _hf_generate(ort_model, case), case)
    return runner


for _precision, _file in (("fp32", "model.onnx"), ("int8", "model_int8.onnx"),
                          ("int4", "model_int4.onnx")):
    backend(f"optimum {_precision}")(_optimum(_precision, _file))


# --- the project's engine (generation/): rows added by the generation issue -----------------
# Side by side means one prompt and N sampling settings, so a batch-N row decodes N settings of
# case.prompts[0]; the "3 strategies" row is greedy + top-k + top-p in one batch.
ENGINE_STRATEGIES = {
    "greedy": dict(),
    "top-k": dict(temperature=1.0, top_k=50, seed=0),
    "top-p": dict(temperature=1.0, top_p=0.9, seed=0),
}


def _engine(label: str, precision: str | None, strategies: tuple[str, ...],
            per_batch_row: bool = True) -> Runner:
    """An engine row; precision None is the engine's default (decode.json's fastest variant
    that passed the export gate, or int8 for a plain optimum export)."""
    def runner(model: BenchModel, case: BenchCase) -> Row:
        from generation import Engine, SamplingParams

        if not per_batch_row and case.batch != 1:
            raise Skip("the side-by-side strategies row is measured at batch 1 (3 rows)")

        def load():
            try:
                return Engine.load(model.onnx_dir, precision=precision, provider="cpu")
            except ValueError as err:  # that precision is not in the export
                return err
        engine = model.cached(f"engine {precision}", load)
        if isinstance(engine, ValueError):
            raise Skip(str(engine).splitlines()[0])
        model.loaded.setdefault("engine files", {})[label] = engine.info.get("onnx_file")
        names = strategies * case.batch if per_batch_row else strategies
        params = [SamplingParams(**ENGINE_STRATEGIES[n]) for n in names]
        ids = case.prompts[0]

        def run(n: int, tick) -> None:
            rows = []
            for update in engine.stream_tokens(ids, params, n):
                tick()  # this step's tokens (and text) exist now
                rows = update.rows
            if any(len(r.token_ids) != n for r in rows):  # an EOS would fake a faster run
                raise RuntimeError("a row stopped at EOS before n tokens; pick other seeds")
        rows_case = BenchCase([ids] * len(params), case.new_tokens, case.repeats)
        return measure(label, run, rows_case)
    return runner


for _precision in ("fp32", "int8", "int4"):
    backend(f"engine {_precision}")(_engine(f"engine {_precision}", _precision, ("greedy",)))
backend("engine")(_engine("engine", None, ("greedy",)))
for _name in ("top-k", "top-p"):
    backend(f"engine {_name}")(_engine(f"engine {_name}", None, (_name,)))
backend("engine 3 strategies")(_engine("engine 3 strategies", None, ("greedy", "top-k", "top-p"),
                                       per_batch_row=False))

# Other engines (CTranslate2, llama.cpp) on GPT-2 124M: rows that skip unless the peers' venv runs
# this script (bench/peers.py says how).
from bench import peers  # noqa: E402, F401  (registers its rows after the engine's)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python bench/decode.py", description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", type=Path, help="PyTorch model directory (exported unless --onnx-dir)")
    src.add_argument("--random-init", choices=sorted(_setup.ARCHITECTURES),
                     help="build this real architecture with random weights (offline, cached)")
    p.add_argument("--onnx-dir", type=Path, default=None,
                   help="an existing export of --model (python -m export); default: export into the cache")
    p.add_argument("--new-tokens", type=int, default=128, help="tokens generated per row")
    p.add_argument("--prompt-tokens", type=int, nargs="+", default=[200],
                   help="prompt length(s) of every row; several are measured in one run")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 3], help="batch sizes to measure")
    p.add_argument("--repeats", type=int, default=1, help="timed runs per row (median reported)")
    p.add_argument("--threads", type=int, default=0,
                   help="threads for torch and ONNX Runtime (0: every visible core)")
    p.add_argument("--backends", nargs="+", default=None,
                   help=f"subset of rows to run (default all: {', '.join(BACKENDS)})")
    p.add_argument("--gate", action="store_true", help="run the export's validation gate (slower)")
    p.add_argument("--cache-dir", type=Path, default=_setup.DEFAULT_CACHE,
                   help="where random-init models and exports are kept between runs")
    p.add_argument("--tokenizer", type=Path, default=_setup.SHARED_GPT2,
                   help="GPT-2 tokenizer files for --random-init (default: ../shared/tokenizers/gpt2)")
    p.add_argument("--json", type=Path, default=None,
                   help="where to write the results (default: a new file "
                        "bench/results/decode_<model>_<UTC time>.json; an existing file is "
                        "refused unless --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="allow --json to replace a file")
    p.add_argument("--no-floor", dest="floor", action="store_false",
                   help="skip the memory-floor row (it allocates a buffer of 4x the last-level "
                        "cache and takes ~10 s)")
    return p


def prefill_flops(config: dict, prompt_tokens: int) -> float:
    """Useful FLOPs of a GPT-Neo prefill: 2 per weight per token for the layers' matmuls, the
    attention products (QK^T and PV over each position's visible keys: the window on local
    layers) and one row of logits (what a generation needs; graphs that compute logits at
    every position do extra work that is not counted)."""
    d, layers = config["hidden_size"], config["num_layers"]
    ff = config.get("intermediate_size") or 4 * d
    windows = [config.get("window_size", 256) if kind == "local" else 0
               for kind in _attention_layers(config)]
    matmuls = 2 * prompt_tokens * layers * (4 * d * d + 2 * d * ff)
    visible = sum(sum(min(t + 1, w) if w else t + 1 for t in range(prompt_tokens)) for w in windows)
    return float(matmuls + 4 * d * visible + 2 * d * config["vocab_size"])


def _attention_layers(config: dict) -> list[str]:
    if config.get("attention_layers"):
        return list(config["attention_layers"])
    return [kind for kinds, n in config["attention_types"] for _ in range(n) for kind in kinds]


def prepare(args: argparse.Namespace, log=print) -> BenchModel:
    """Resolve (build/export when needed) the model under test."""
    from transformers import AutoTokenizer

    threads = args.threads or _setup.machine_info(0)["cores_visible"]
    if args.random_init:
        if not (args.tokenizer / "vocab.json").exists():
            raise ValueError(f"--tokenizer {args.tokenizer}: no GPT-2 vocab.json (set NEO_SHARED_DIR)")
        torch_dir, onnx_dir = _setup.prepare_random_init(args.random_init, args.cache_dir,
                                                         args.tokenizer, args.gate, log)
        name = f"{args.random_init} (random init)"
    else:
        torch_dir = args.model
        if not (torch_dir / "config.json").is_file():
            raise ValueError(f"--model {torch_dir}: not a model directory (no config.json)")
        onnx_dir = args.onnx_dir or args.cache_dir / "exports" / torch_dir.resolve().name
        if args.onnx_dir is None:
            _setup.ensure_export(torch_dir, onnx_dir, args.gate, log)
        name = torch_dir.name
    config = json.loads((torch_dir / "config.json").read_text())
    return BenchModel(name, torch_dir, onnx_dir, threads, AutoTokenizer.from_pretrained(torch_dir),
                      config=config)


def run_all(model: BenchModel, args: argparse.Namespace, log=print) -> tuple[list[Row], dict]:
    """Every selected backend at every prompt length and batch size; returns the rows and the
    skip reasons."""
    rows, skipped = [], {}
    cases = [(length, batch) for length in args.prompt_tokens for batch in args.batch]
    for name in args.backends or list(BACKENDS):
        for length, batch in cases:
            case = BenchCase(_setup.prompt_rows(model.tokenizer, batch, length),
                             args.new_tokens, args.repeats)
            try:
                row = BACKENDS[name](model, case)
            except Skip as why:
                skipped[name] = str(why)
                break
            flops = prefill_flops(model.config, len(case.prompts[0]))
            row.prefill_gflop_s = round(flops / max(row.ttft_ms / 1e3, 1e-9) / 1e9, 2)
            log(f"[bench] {row.backend:<16} batch {row.batch}: {row.decode_tok_s:8.1f} tok/s, "
                f"TTFT {row.ttft_ms:8.1f} ms ({row.prefill_gflop_s:.1f} GFLOP/s)")
            rows.append(row)
    return rows, skipped


def table(rows: list[Row], floors: list[dict] = ()) -> str:
    """A Markdown table of the rows, then the memory-floor rows."""
    lines = ["| backend | batch | prompt | new | TTFT (ms) | prefill GFLOP/s | "
             "decode tok/s (all rows) | ms/step |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r.backend} | {r.batch} | {r.prompt_tokens} | {r.new_tokens} | {r.ttft_ms:.1f} | "
              f"{r.prefill_gflop_s:.1f} | {r.decode_tok_s:.1f} | {r.ms_per_step:.2f} |" for r in rows]
    lines += [f"| memory floor: {f['file']} ({f['weight_bytes'] / 2**20:.1f} MiB / "
              f"{f['bandwidth_gbs']:.1f} GB/s) | 1 | | | | | {1e3 / f['ms_per_step']:.1f} | "
              f"{f['ms_per_step']:.2f} |" for f in floors]
    return "\n".join(lines)


def memory_floors(model: BenchModel, rows: list[Row], log=print) -> list[dict]:
    """The floor row for every ONNX file an engine row ran, and each engine row's ratio to it."""
    from bench import _floor

    files = model.loaded.get("engine files", {})
    if not files:
        return []
    bandwidth = _floor.read_bandwidth()
    log(f"[bench] read bandwidth: {json.dumps(bandwidth)}")
    floors = []
    for path in sorted(set(files.values())):
        read = _floor.weight_bytes_per_step(path, batch=1)
        ms = read["total"] / (bandwidth["bandwidth_gbs"] * 1e9) * 1e3
        ratios = {f"{r.backend} (prompt {r.prompt_tokens})": round(r.ms_per_step / ms, 2)
                  for r in rows if files.get(r.backend) == path and r.batch == 1}
        floors.append({"file": Path(path).name, "weight_bytes": read["total"],
                       "gathered_tables_bytes": read["gathered_tables"], **bandwidth,
                       "ms_per_step": round(ms, 3), "engine_step_over_floor": ratios})
        log(f"[bench] floor {Path(path).name}: {ms:.2f} ms/step; engine rows / floor: {ratios}")
    return floors


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    unknown = sorted(set(args.backends or []) - set(BACKENDS))
    problems = [f"unknown backend(s) {unknown}; known: {list(BACKENDS)}"] if unknown else []
    if args.new_tokens < 2 or min(args.prompt_tokens) < 1 or min(args.batch) < 1 or args.repeats < 1:
        problems.append("--new-tokens must be >= 2; --prompt-tokens, --batch, --repeats >= 1")
    slug = (args.random_init or (args.model.resolve().name if args.model else "model")).replace("/", "_")
    path = args.json or (_setup.REPO_ROOT / "bench" / "results"
                         / f"decode_{slug}_{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.json")
    if path.exists() and not args.overwrite:
        problems.append(f"--json {path} exists; pass --overwrite to replace it")
    try:
        if problems:
            raise ValueError("; ".join(problems))
        model = prepare(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    machine = _setup.machine_info(model.threads)
    print(f"[bench] machine: {json.dumps(machine)}")
    rows, skipped = run_all(model, args)
    machine["load_average_1m_at_end"] = _setup.machine_info(model.threads)["load_average_1m_at_start"]
    floors = memory_floors(model, rows) if args.floor else []
    print(f"[bench] load average (1 min): {machine['load_average_1m_at_start']} at the start, "
          f"{machine['load_average_1m_at_end']} at the end")
    print(table(rows, floors))
    for name, why in skipped.items():
        print(f"[bench] skipped {name}: {why}")
    path.parent.mkdir(parents=True, exist_ok=True)
    result = {"model": model.name, "torch_dir": str(model.torch_dir), "onnx_dir": str(model.onnx_dir),
              "command": "python bench/decode.py " + shlex.join(sys.argv[1:] if argv is None else argv),
              "machine": machine, "rows": [asdict(r) for r in rows], "memory_floor": floors,
              "skipped": skipped, "peers": model.loaded.get("peer info", {}),
              "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"[bench] wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
