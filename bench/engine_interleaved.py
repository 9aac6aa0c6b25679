"""The engine's strategies against a plain loop and optimum, interleaved round by round.

    python bench/engine_interleaved.py --random-init gpt-neo-125m --prompt-tokens 17 --rounds 5

On a machine that other jobs share, the load drifts during a run; measuring each
configuration once per round, in turn, exposes them all to the same drift, so the ratios
(top-p vs greedy, 3 strategies vs 1, engine vs optimum) stay meaningful even when the
absolute numbers do not. Per configuration: time to first token and ms per decoding step
(from the tick of each step), median over rounds (min beside it).

Configurations: `plain loop` (the engine's own session: prefill, then step + argmax in a bare
Python loop, no sampling, no detokenization: the floor of the engine's loop), the engine with
greedy / top-k / top-p / the three side by side, and optimum's `generate` on the same file.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _setup  # noqa: E402
from bench.decode import ENGINE_STRATEGIES, _Ticks  # noqa: E402


def plain_loop(engine, ids: list[int], n: int) -> list[float]:
    runner, stamps = engine.runner, []
    cache = runner.new_cache(1, len(ids) + n)
    logits = runner.prefill(cache, 0, ids)
    token = np.array([int(logits[-1].argmax())])
    stamps.append(time.perf_counter())
    for _ in range(n - 1):
        logits = runner.step(cache, token)
        token = np.array([int(logits[0].argmax())])
        stamps.append(time.perf_counter())
    return stamps


def engine_run(engine, ids: list[int], n: int, names: tuple[str, ...]) -> list[float]:
    from generation import SamplingParams

    params = [SamplingParams(**ENGINE_STRATEGIES[name]) for name in names]
    stamps, rows = [], []
    for update in engine.stream_tokens(ids, params, n):
        stamps.append(time.perf_counter())
        rows = update.rows
    if any(len(r.token_ids) != n for r in rows):
        raise RuntimeError("a row stopped at EOS early; the timing would be wrong")
    return stamps


def optimum_run(model, ids: list[int], n: int) -> list[float]:
    import torch

    stamps: list[float] = []
    tokens = torch.tensor([ids])
    with torch.inference_mode():
        model.generate(input_ids=tokens, attention_mask=torch.ones_like(tokens), do_sample=False,
                       max_new_tokens=n, min_new_tokens=n, pad_token_id=0,
                       streamer=_Ticks(lambda: stamps.append(time.perf_counter())))
    return stamps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/engine_interleaved.py", description=__doc__.split("\n")[0])
    p.add_argument("--random-init", choices=sorted(_setup.ARCHITECTURES), default="gpt-neo-125m")
    p.add_argument("--precision", default="int8", choices=["fp32", "int8", "int4"])
    p.add_argument("--prompt-tokens", type=int, default=17)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--no-optimum", action="store_true", help="leave optimum's generate out")
    p.add_argument("--cache-dir", type=Path, default=_setup.DEFAULT_CACHE)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.prompt_tokens < 1 or args.new_tokens < 2 or args.rounds < 1:
        print("error: --prompt-tokens >= 1, --new-tokens >= 2, --rounds >= 1", file=sys.stderr)
        return 2

    import onnxruntime as ort
    from transformers import AutoTokenizer

    from generation import Engine
    from generation.contract import OPTIMUM_FILES

    torch_dir, onnx_dir = _setup.prepare_random_init(args.random_init, args.cache_dir,
                                                     _setup.SHARED_GPT2, False)
    tokenizer = AutoTokenizer.from_pretrained(torch_dir)
    ids = _setup.prompt_rows(tokenizer, 1, args.prompt_tokens)[0]
    engine = Engine.load(onnx_dir, precision=args.precision, provider="cpu")
    n = args.new_tokens
    configs = {
        "plain loop": lambda: plain_loop(engine, ids, n),
        "engine greedy": lambda: engine_run(engine, ids, n, ("greedy",)),
        "engine top-k": lambda: engine_run(engine, ids, n, ("top-k",)),
        "engine top-p": lambda: engine_run(engine, ids, n, ("top-p",)),
        "engine 3 strategies": lambda: engine_run(engine, ids, n, ("greedy", "top-k", "top-p")),
    }
    if not args.no_optimum:
        import torch
        from optimum.onnxruntime import ORTModelForCausalLM

        torch.set_num_threads(1)
        options = ort.SessionOptions()
        options.intra_op_num_threads = _setup.machine_info(0)["cores_visible"]
        ort_model = ORTModelForCausalLM.from_pretrained(
            onnx_dir, file_name=OPTIMUM_FILES[args.precision], session_options=options)
        configs["optimum generate"] = lambda: optimum_run(ort_model, ids, n)

    machine = _setup.machine_info(engine.runner.session.get_session_options().intra_op_num_threads)
    print(f"[interleaved] machine: {json.dumps(machine)}")
    for run in configs.values():
        run()  # warm-up
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in configs}
    for r in range(args.rounds):
        for name, run in configs.items():
            start = time.perf_counter()
            stamps = run()
            samples[name].append((stamps[0] - start, (stamps[-1] - stamps[0]) / (len(stamps) - 1)))
        print(f"[interleaved] round {r + 1}/{args.rounds} done")

    base = statistics.median(s for _, s in samples["engine greedy"])
    lines = [f"{args.random_init} (random init) {args.precision}, prompt {args.prompt_tokens} tokens, "
             f"{n} new tokens, {args.rounds} interleaved rounds",
             "| configuration | TTFT ms (median) | ms/step (median) | ms/step (min) | × engine greedy |",
             "| --- | ---: | ---: | ---: | ---: |"]
    rows = []
    for name, values in samples.items():
        ttft = statistics.median(t for t, _ in values) * 1e3
        step = statistics.median(s for _, s in values)
        rows.append({"configuration": name, "ttft_ms": round(ttft, 2), "ms_per_step": round(step * 1e3, 3),
                     "ms_per_step_min": round(min(s for _, s in values) * 1e3, 3),
                     "vs_engine_greedy": round(step / base, 3)})
        lines.append(f"| {name} | {ttft:.1f} | {step * 1e3:.2f} | {min(s for _, s in values) * 1e3:.2f} | "
                     f"{step / base:.2f} |")
    print("\n".join(lines))
    machine["load_average_1m_at_end"] = _setup.machine_info(0)["load_average_1m_at_start"]
    path = args.json or (_setup.REPO_ROOT / "bench" / "results" /
                         f"engine_interleaved_{args.precision}_p{args.prompt_tokens}.json")
    _setup.write_result(path, "bench/engine_interleaved.py", argv, machine, rows, "interleaved")
    return 0


if __name__ == "__main__":
    sys.exit(main())
