"""The sampler against the forward pass it follows: many rows, a 50k vocabulary, one run.

    python bench/sampler.py --random-init gpt-neo-125m --rows 48 --steps 32 [--candidates 5]

The rows are what the demo's /generate sends for rows/3 users: per user one greedy row, one
sampling row (temperature 0.8) and one top-k/top-p row (0.8, k=40, p=0.9), each user its own
prompt. All rows are prefilled, then every step runs the decode graph's batched step (the
forward) and `select_next` on its logits (the sampler), each timed alone, as the serving loop
runs them. `--mix` picks other row kinds (greedy, sample, topk, topp, demo). Reported per mix:
forward and sampler ms per step (median over the steps), the sampler as a share of the forward,
the load average at start and end. Prints a table and writes JSON (default
`bench/results/sampler_<model>_<time>.json`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _setup  # noqa: E402

MIXES = {
    # One entry per user: the rows that user's request adds.
    "demo": ({"temperature": 0.0}, {"temperature": 0.8}, {"temperature": 0.8, "top_k": 40, "top_p": 0.9}),
    "greedy": ({"temperature": 0.0},),
    "sample": ({"temperature": 0.8},),
    "topk": ({"temperature": 0.8, "top_k": 40},),
    "topp": ({"temperature": 0.8, "top_p": 0.9},),
}


def mix_params(mix: str, rows: int) -> list:
    """`rows` SamplingParams cycling through the mix's row kinds, each with its own seed."""
    from generation import SamplingParams

    kinds = MIXES[mix]
    return [SamplingParams(**kinds[i % len(kinds)], seed=i) for i in range(rows)]


def measure(runner, prompts: list[list[int]], params: list, steps: int, candidates: int) -> dict:
    """Prefill every row, then `steps` timed (forward, sampler) pairs."""
    from generation.sampling.candidates import row_candidates
    from generation.sampling.pipeline import select_next

    rows = len(params)
    cache = runner.new_cache(rows, max(len(p) for p in prompts) + steps + 1)
    last = np.stack([runner.prefill(cache, slot, prompts[slot // 3 % len(prompts)])[-1]
                     for slot in range(rows)])
    rngs = [np.random.default_rng(p.seed) for p in params]
    tokens = select_next(last, params, rngs)[0]
    forward, sampler = [], []
    for _ in range(steps):
        t0 = time.perf_counter()
        logits = runner.step(cache, tokens)
        t1 = time.perf_counter()
        if candidates:
            tokens, _, warped = select_next(logits, params, rngs, keep_warped=True)
            row_candidates(logits, warped, [q.greedy for q in params], tokens, candidates)
        else:
            tokens, _ = select_next(logits, params, rngs)
        t2 = time.perf_counter()
        forward.append(t1 - t0)
        sampler.append(t2 - t1)
    return {"forward_ms": 1e3 * statistics.median(forward), "sampler_ms": 1e3 * statistics.median(sampler),
            "sampler_ms_mean": 1e3 * statistics.fmean(sampler)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/sampler.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--random-init", choices=sorted(_setup.ARCHITECTURES), default="gpt-neo-125m",
                   help="build this architecture with random weights (offline, cached)")
    p.add_argument("--model-dir", type=Path, default=None,
                   help="an export directory to use instead of --random-init (e.g. demo_model)")
    p.add_argument("--precision", default="int4", choices=("int4", "int8", "fp32"))
    p.add_argument("--rows", type=int, default=48, help="rows decoded together (default 48)")
    p.add_argument("--steps", type=int, default=32, help="timed steps per mix")
    p.add_argument("--prompt-tokens", type=int, default=17)
    p.add_argument("--mix", nargs="+", default=["demo"], choices=sorted(MIXES))
    p.add_argument("--candidates", type=int, default=0,
                   help="also compute this many candidates per row, as the explorer asks")
    p.add_argument("--cache-dir", type=Path, default=_setup.DEFAULT_CACHE)
    p.add_argument("--tokenizer", type=Path, default=_setup.SHARED_GPT2)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.rows < 1 or args.steps < 1 or args.prompt_tokens < 1 or args.candidates < 0:
        p.error("--rows, --steps and --prompt-tokens must be >= 1, --candidates >= 0")

    from generation.model import Model

    if args.model_dir is not None:
        onnx_dir, name = args.model_dir, args.model_dir.name
    else:
        onnx_dir, name = _setup.prepare_random_init(args.random_init, args.cache_dir, args.tokenizer,
                                                    gate=False)[1], args.random_init
    model = Model.load(onnx_dir, args.precision)
    machine = _setup.machine_info(len(os.sched_getaffinity(0)))
    from transformers import AutoTokenizer

    prompts = _setup.prompt_rows(AutoTokenizer.from_pretrained(onnx_dir), max(1, args.rows // 3),
                                 args.prompt_tokens)
    results = []
    print(f"{'mix':<8} {'rows':>4} {'cand':>4} {'forward ms':>10} {'sampler ms':>10} {'share':>6} {'load':>5}")
    for mix in args.mix:
        load = os.getloadavg()[0]
        r = measure(model.runner, prompts, mix_params(mix, args.rows), args.steps, args.candidates)
        r.update(mix=mix, rows=args.rows, candidates=args.candidates, load_average_1m=load,
                 share=r["sampler_ms"] / r["forward_ms"])
        print(f"{mix:<8} {args.rows:>4} {args.candidates:>4} {r['forward_ms']:>10.2f} "
              f"{r['sampler_ms']:>10.2f} {r['share']:>6.1%} {load:>5.2f}", flush=True)
        results.append(r)
    machine["load_average_1m_at_end"] = os.getloadavg()[0]
    machine.update(model=str(onnx_dir), precision=args.precision, info=model.info)
    path = args.json or _setup.REPO_ROOT / "bench" / "results" / f"sampler_{name}_{time.strftime('%Y%m%d-%H%M%S')}.json"
    _setup.write_result(path, "bench/sampler.py", argv, machine, results, "sampler")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
