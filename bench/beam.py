"""A beam request against independent rows, and the cost of candidates, interleaved round by round.

    python bench/beam.py --random-init gpt-neo-125m --precision int4 --prompt-tokens 17 200 --rounds 5

Per prompt length, each configuration runs once per round, in turn (so a drifting load hits
them all alike): `4 greedy rows` (four independent rows of the same prompt), `4-beam` (one
request, num_beams=4: four rows plus a reorder of their cache slots after every step),
`3 strategies` (greedy, top-k, top-p side by side) and `3 strategies + candidates` (the same
with candidates=5). Reported: ms per decoding step (median and min over rounds), time to first
token, the beam's reorder copies and the seconds spent in them, and the ratios the cost goals
name: 4-beam / 4 greedy rows (goal <= 1.15) and candidates on / off (goal <= 1.05).
`--model DIR` runs on an existing export instead (e.g. demo_model, to try the script quickly).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _setup  # noqa: E402

STRATEGIES = [dict(), dict(temperature=0.8, top_k=50, seed=0), dict(temperature=0.8, top_p=0.9, seed=0)]


def configurations(beams: int) -> dict:
    """name -> (params kwargs per row, candidates K)."""
    return {
        f"{beams} greedy rows": ([dict()] * beams, 0),
        f"{beams}-beam": ([dict(num_beams=beams)], 0),
        "3 strategies": (STRATEGIES, 0),
        "3 strategies + candidates": (STRATEGIES, 5),
    }


def timed_run(engine, ids: list[int], n: int, rows: list[dict], k: int) -> dict:
    """One request on a loop of its own, driven on this thread; its step times and counters."""
    from generation import SamplingParams
    from generation.loop import Loop
    from generation.request import slots_of

    params = [SamplingParams(**r) for r in rows]
    prepared = engine.prepare(None, params, n, ids, k)
    loop = Loop(engine, max_rows=slots_of(params), queue_size=1, capacity=len(ids) + n, threaded=False)
    start, stamps = time.perf_counter(), []
    for _ in loop.drive(loop.enqueue(prepared)):
        stamps.append(time.perf_counter())
    if len(stamps) < 2:
        raise RuntimeError("a request ended after one step; the timing would be meaningless")
    timing = loop.executor.timing
    return {"ttft_s": stamps[0] - start, "step_s": (stamps[-1] - stamps[0]) / (len(stamps) - 1),
            "steps": len(stamps), "reorder_copies": timing["reorder_copies"],
            "reorder_s": timing["reorder_s"], "sample_s": timing["sample_s"]}


def measure(engine, ids: list[int], n: int, rounds: int, configs: dict) -> dict[str, list[dict]]:
    """Every configuration once per round, in turn, after one warm-up run each."""
    for rows, k in configs.values():
        timed_run(engine, ids, n, rows, k)
    samples: dict[str, list[dict]] = {name: [] for name in configs}
    for r in range(rounds):
        for name, (rows, k) in configs.items():
            samples[name].append(timed_run(engine, ids, n, rows, k))
        print(f"[beam] prompt {len(ids)}: round {r + 1}/{rounds} done")
    return samples


def summarize(samples: dict[str, list[dict]], beams: int) -> list[dict]:
    """One row per configuration: medians, mins, and the ratios of the cost goals."""
    step = {name: statistics.median(s["step_s"] for s in values) for name, values in samples.items()}
    base = {f"{beams}-beam": step[f"{beams} greedy rows"],
            "3 strategies + candidates": step["3 strategies"]}
    out = []
    for name, values in samples.items():
        out.append({
            "configuration": name,
            "ms_per_step": round(step[name] * 1e3, 3),
            "ms_per_step_min": round(min(s["step_s"] for s in values) * 1e3, 3),
            "ttft_ms": round(statistics.median(s["ttft_s"] for s in values) * 1e3, 2),
            "steps": values[0]["steps"],
            "reorder_copies_per_run": values[0]["reorder_copies"],
            "reorder_ms_per_step": round(statistics.median(s["reorder_s"] / s["steps"] for s in values) * 1e3, 4),
            "ratio": round(step[name] / base[name], 3) if name in base else None,
        })
    return out


def table(title: str, rows: list[dict]) -> str:
    lines = [title, "| configuration | ms/step (median) | ms/step (min) | TTFT ms | steps | reorder copies "
             "| reorder ms/step | ratio |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.3f}"
        lines.append(f"| {r['configuration']} | {r['ms_per_step']:.2f} | {r['ms_per_step_min']:.2f} "
                     f"| {r['ttft_ms']:.1f} | {r['steps']} | {r['reorder_copies_per_run']} "
                     f"| {r['reorder_ms_per_step']:.3f} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/beam.py", description=__doc__.split("\n")[0])
    p.add_argument("--random-init", choices=sorted(_setup.ARCHITECTURES), default="gpt-neo-125m")
    p.add_argument("--model", type=Path, default=None, help="an export directory instead of --random-init")
    p.add_argument("--precision", default="int4", choices=["fp32", "int8", "int4"])
    p.add_argument("--prompt-tokens", type=int, nargs="+", default=[17, 200])
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--beams", type=int, default=4)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--cache-dir", type=Path, default=_setup.DEFAULT_CACHE)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if min(args.prompt_tokens) < 1 or args.new_tokens < 3 or args.rounds < 1 or args.beams < 2:
        print("error: --prompt-tokens >= 1, --new-tokens >= 3, --rounds >= 1, --beams >= 2", file=sys.stderr)
        return 2

    from generation import Engine

    if args.model is None:
        _, model_dir = _setup.prepare_random_init(args.random_init, args.cache_dir, _setup.SHARED_GPT2, False)
        name = f"{args.random_init} (random init)"
    else:
        model_dir, name = args.model, str(args.model)
    engine = Engine.load(model_dir, precision=args.precision, provider="cpu")
    machine = _setup.machine_info(engine.runner.session.get_session_options().intra_op_num_threads)
    print(f"[beam] machine: {json.dumps(machine)}")
    stream = [t for t in range(engine.vocab_size) if t not in engine.eos_ids]
    results = {}
    for length in args.prompt_tokens:
        ids = [stream[(7 * i + 3) % len(stream)] for i in range(length)]
        rows = summarize(measure(engine, ids, args.new_tokens, args.rounds, configurations(args.beams)),
                         args.beams)
        results[str(length)] = rows
        print(table(f"{name} {args.precision}, prompt {length} tokens, {args.new_tokens} new tokens, "
                    f"{args.rounds} interleaved rounds", rows))
    machine["load_average_1m_at_end"] = _setup.machine_info(0)["load_average_1m_at_start"]
    path = args.json or (_setup.REPO_ROOT / "bench" / "results" / f"beam_{args.precision}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"command": "python bench/beam.py " + " ".join(
        sys.argv[1:] if argv is None else argv), "model": name, "machine": machine, "results": results,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=2) + "\n")
    print(f"[beam] wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
