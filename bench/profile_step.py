"""Where a decode step's time goes: ONNX Runtime's profiler on the engine's runner, by op type.

    python bench/profile_step.py --random-init gpt-neo-125m --precision int4 --batch 1 --steps 64

Opens the export's decode graph as the engine does (same session options) with
`SessionOptions.enable_profiling`, prefills a prompt, runs `--steps` steps at `--batch` rows,
and sums the profiler's kernel times per op type (`Node` events ending in `_kernel_time`):
milliseconds a step and share of the kernel time, beside the wall time of a step. `--min-rows 1`
runs a padded graph unpadded (what the start-up probe does where a lone row matches), 2 padded.
Prints the table and the load average; `--json` writes it.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _setup  # noqa: E402


def profiled_runner(path: Path, threads: int | None, profile_dir: str):
    """A DecodeRunner on `path`, its session opened as the engine opens it, profiling on."""
    from generation.runners.decode_graph import DecodeRunner
    from generation.runners.session import create_session

    session, _ = create_session(str(path), "cpu", threads, os.path.join(profile_dir, "step"))
    return DecodeRunner(session)


def op_table(profile: Path, runs: int) -> list[dict]:
    """Kernel time per op type over the last `runs` session runs of a profile file."""
    events = json.loads(profile.read_text())
    run_starts = [e["ts"] for e in events if e.get("cat") == "Session" and e["name"] == "model_run"]
    since = sorted(run_starts)[-runs] if len(run_starts) >= runs else 0
    per_op: dict[str, float] = collections.defaultdict(float)
    counts: dict[str, int] = collections.defaultdict(int)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= since:
            op = e.get("args", {}).get("op_name", "?")
            per_op[op] += e["dur"] / 1e3
            counts[op] += 1
    total = sum(per_op.values()) or 1.0
    return [{"op": op, "ms_per_step": round(ms / runs, 4), "share": round(ms / total, 4),
             "nodes_per_step": counts[op] // runs}
            for op, ms in sorted(per_op.items(), key=lambda kv: -kv[1])]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/profile_step.py", description=__doc__.split("\n")[0])
    p.add_argument("--random-init", choices=sorted(_setup.ARCHITECTURES), default="gpt-neo-125m")
    p.add_argument("--onnx-dir", type=Path, default=None, help="an export directory instead")
    p.add_argument("--precision", default="int4", choices=["fp32", "int8", "int4"])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--prompt-tokens", type=int, default=17)
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: cores)")
    p.add_argument("--min-rows", type=int, choices=[1, 2], default=None,
                   help="rows a padded graph pads to (default: the graph's own, 2)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.batch < 1 or args.steps < 1 or args.prompt_tokens < 1:
        print("error: --batch, --steps and --prompt-tokens must be >= 1", file=sys.stderr)
        return 2
    onnx_dir = args.onnx_dir or _setup.prepare_random_init(
        args.random_init, _setup.DEFAULT_CACHE, _setup.SHARED_GPT2, False)[1]
    meta = json.loads((onnx_dir / "decode.json").read_text())
    if args.precision not in meta["files"]:
        print(f"error: no {args.precision} decode graph in {onnx_dir}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        runner = profiled_runner(onnx_dir / meta["files"][args.precision], args.threads, tmp)
        if args.min_rows is not None and runner.min_rows is not None:
            runner.min_rows[0] = args.min_rows
        cache = runner.new_cache(args.batch, args.prompt_tokens + args.steps + 8)
        for slot in range(args.batch):
            runner.prefill(cache, slot, [(7 * slot + i) % 1000 for i in range(args.prompt_tokens)])
        tokens = np.arange(args.batch, dtype=np.int64)
        for _ in range(4):
            runner.step(cache, tokens)
        start = time.perf_counter()
        for _ in range(args.steps):
            runner.step(cache, tokens)
        wall = (time.perf_counter() - start) * 1e3 / args.steps
        rows = op_table(Path(runner.session.end_profiling()), args.steps)
    result = {"onnx_dir": str(onnx_dir), "precision": args.precision, "batch": args.batch,
              "min_rows": None if runner.min_rows is None else int(runner.min_rows[0]),
              "wall_ms_per_step": round(wall, 3), "load_average_1m": os.getloadavg()[0],
              "kernel_ms_per_step": round(sum(r["ms_per_step"] for r in rows), 3), "ops": rows}
    print(f"{args.precision} decode step, batch {args.batch}, min_rows {result['min_rows']}: "
          f"wall {wall:.2f} ms/step (profiling on), kernels {result['kernel_ms_per_step']:.2f} ms, "
          f"load {result['load_average_1m']:.2f}")
    print("| op type | ms/step | share | nodes/step |\n| --- | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['op']} | {r['ms_per_step']:.3f} | {r['share'] * 100:.1f} % | {r['nodes_per_step']} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
