"""First token of a long prompt: prefill graphs and chunk sizes side by side, interleaved.

    python bench/prefill.py --random-init gpt-neo-125m --prompt-tokens 200 --rounds 7

Each option is `GRAPH@CHUNK`: GRAPH a decode graph of the export (`int4`, `int8`, `fp32`: the
decode graph prefills itself, as the engine does without a prefill graph), a prefill kind of
`export.decode.prefill` (`int4-fp32`, `int8-dynamic`; built once from the cached checkpoint
beside the export), or `optimum-int8` / `optimum-fp32` (optimum's graph, one call); CHUNK the
prompt tokens per call (`all`: the whole prompt in one). Time to first token = every chunk's
call + the argmax of the last logits, through the engine's runners. The options take turns
round by round, so load drift hits them all alike; median and min over rounds, the load
average at start and end, each session's resident memory (RSS growth when it was opened).
Prints a table and writes JSON (default `bench/results/prefill_<model>_p<N>_<time>.json`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _setup  # noqa: E402

DECODE_GRAPHS = ("int4", "int8", "fp32")
BUILT_KINDS = ("int4-fp32", "int8-dynamic")
OPTIMUM = {"optimum-int8": "int8", "optimum-fp32": "fp32"}
DEFAULT_OPTIONS = ("int4@64", "int4@all", "int4-fp32@64", "int4-fp32@all", "int8-dynamic@64",
                   "int8-dynamic@all", "fp32@all", "int8@64", "optimum-int8@all")


def parse_option(text: str) -> tuple[str, int | None]:
    """`GRAPH@CHUNK` → (graph, chunk or None for the whole prompt).

    Raises:
        ValueError: an unknown graph or a bad chunk.
    """
    graph, _, chunk = text.partition("@")
    if graph not in (*DECODE_GRAPHS, *BUILT_KINDS, *OPTIMUM):
        raise ValueError(f"unknown graph {graph!r} in {text!r}; one of "
                         f"{', '.join((*DECODE_GRAPHS, *BUILT_KINDS, *OPTIMUM))}")
    if chunk in ("", "all"):
        return graph, None
    if not chunk.isdigit() or int(chunk) < 1:
        raise ValueError(f"chunk must be a positive integer or 'all', got {chunk!r} in {text!r}")
    return graph, int(chunk)


def rss_mib() -> float:
    """This process's resident memory."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def prefill_graph_path(graph: str, torch_dir: Path, onnx_dir: Path, meta: dict, log=print) -> Path:
    """The ONNX file of a graph name, building a prefill kind once under `onnx_dir/../prefill`."""
    if graph in DECODE_GRAPHS:
        return onnx_dir / meta["files"][graph]
    path = onnx_dir.parent / f"{onnx_dir.name}-prefill" / f"prefill_{graph}.onnx"
    if not path.exists():
        import onnx

        from export.decode.checkpoint import read_checkpoint
        from export.decode.prefill import build_prefill_graph

        log(f"[prefill] building {path}")
        config, weights = read_checkpoint(torch_dir)
        model = build_prefill_graph(config, weights, graph, meta["block_sizes"].get("int4", 32),
                                    bool(meta.get("window_cache")))
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        onnx.save(model, str(partial))
        partial.rename(path)
    return path


def open_runner(graph: str, torch_dir: Path, onnx_dir: Path, meta: dict, sessions: dict):
    """A runner whose `prefill` runs `graph` (sessions shared between options of one graph)."""
    from generation.contract import OPTIMUM_FILES
    from generation.runners.decode_graph import DecodeRunner
    from generation.runners.optimum import OptimumRunner, map_io
    from generation.runners.session import create_session

    if graph not in sessions:
        before = rss_mib()
        if graph in OPTIMUM:
            session = create_session(str(onnx_dir / OPTIMUM_FILES[OPTIMUM[graph]]), "cpu")[0]
            config = json.loads((onnx_dir / "config.json").read_text())
            runner = OptimumRunner(session, "cpu", map_io(session, config["num_heads"],
                                                          config["hidden_size"]))
        else:
            path = prefill_graph_path(graph, torch_dir, onnx_dir, meta)
            runner = DecodeRunner(create_session(str(path), "cpu")[0])
        sessions[graph] = (runner, round(rss_mib() - before, 1))
    return sessions[graph]


def time_first_token(runner, ids: list[int], chunk: int | None) -> float:
    """Seconds from the first prefill call to the first token's argmax."""
    cache = runner.new_cache(1, len(ids) + 1)
    start = time.perf_counter()
    step = chunk or len(ids)
    for i in range(0, len(ids), step):
        logits = runner.prefill(cache, 0, ids[i:i + step])
    int(np.argmax(logits[-1]))
    return time.perf_counter() - start


def table(rows: list[dict], title: str) -> str:
    """The results as a Markdown table."""
    lines = [title, "| option | TTFT ms (median) | min | × first option | session RSS MiB |",
             "| --- | ---: | ---: | ---: | ---: |"]
    base = rows[0]["ttft_ms"]
    for r in rows:
        lines.append(f"| {r['option']} | {r['ttft_ms']:.1f} | {r['ttft_ms_min']:.1f} | "
                     f"{r['ttft_ms'] / base:.2f} | {r['session_rss_mib']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/prefill.py", description=__doc__.split("\n")[0])
    p.add_argument("--random-init", choices=sorted(_setup.ARCHITECTURES), default="gpt-neo-125m")
    p.add_argument("--prompt-tokens", type=int, default=200)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--options", nargs="+", default=list(DEFAULT_OPTIONS), metavar="GRAPH@CHUNK")
    p.add_argument("--model-dir", type=Path, default=None,
                   help="with --onnx-dir: a model directory and its export instead of --random-init")
    p.add_argument("--onnx-dir", type=Path, default=None)
    p.add_argument("--cache-dir", type=Path, default=_setup.DEFAULT_CACHE)
    p.add_argument("--tokenizer", type=Path, default=_setup.SHARED_GPT2)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    try:
        options = {text: parse_option(text) for text in args.options}
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.prompt_tokens < 1 or args.rounds < 1:
        print("error: --prompt-tokens and --rounds must be >= 1", file=sys.stderr)
        return 2

    from transformers import AutoTokenizer

    if (args.model_dir is None) != (args.onnx_dir is None):
        print("error: --model-dir and --onnx-dir go together", file=sys.stderr)
        return 2
    torch_dir, onnx_dir = (args.model_dir, args.onnx_dir) if args.onnx_dir else \
        _setup.prepare_random_init(args.random_init, args.cache_dir, args.tokenizer, False)
    meta = json.loads((onnx_dir / "decode.json").read_text())
    ids = _setup.prompt_rows(AutoTokenizer.from_pretrained(torch_dir), 1, args.prompt_tokens)[0]
    sessions: dict = {}
    runners = {text: open_runner(graph, torch_dir, onnx_dir, meta, sessions)
               for text, (graph, _) in options.items()}
    from generation.runners.session import available_cores

    machine = _setup.machine_info(available_cores())
    print(f"[prefill] machine: {json.dumps(machine)}")
    samples: dict[str, list[float]] = {text: [] for text in options}
    for text, (runner, _) in runners.items():
        time_first_token(runner, ids, options[text][1])  # warm-up
    for r in range(args.rounds):
        for text, (runner, _) in runners.items():
            samples[text].append(time_first_token(runner, ids, options[text][1]) * 1e3)
        print(f"[prefill] round {r + 1}/{args.rounds} done")
    rows = [{"option": text, "graph": options[text][0], "chunk": options[text][1] or "all",
             "ttft_ms": round(statistics.median(v), 2), "ttft_ms_min": round(min(v), 2),
             "session_rss_mib": runners[text][1]} for text, v in samples.items()]
    machine["load_average_1m_at_end"] = os.getloadavg()[0]
    print(table(rows, f"{args.random_init} (random init), prompt {args.prompt_tokens} tokens, "
                      f"{args.rounds} interleaved rounds, load {machine['load_average_1m_at_start']:.2f}"
                      f" → {machine['load_average_1m_at_end']:.2f}"))
    path = args.json or (_setup.REPO_ROOT / "bench" / "results" / (
        f"prefill_{args.random_init}_p{args.prompt_tokens}_{time.strftime('%Y%m%d-%H%M%S')}.json"))
    _setup.write_result(path, "bench/prefill.py", argv, machine, rows, "prefill")
    return 0


if __name__ == "__main__":
    sys.exit(main())
