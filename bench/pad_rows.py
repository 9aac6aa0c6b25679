"""What batch invariance costs: the 4-bit decode graph with and without row padding, A/B.

    python bench/pad_rows.py --random-init gpt-neo-125m [--rounds 5] [--json PATH]

MatMulNBits can round a single row (M = 1) differently from several rows, depending on the CPU
and block size, so the export's quantized decode graphs edge-pad every weight matmul's input to
at least two rows (export/decode/graph.py, `pad_rows`). This builds the same 4-bit graph without
the padding (in a temporary folder, from the cached random-init checkpoint) and times one decode
step of both through the engine's runner, interleaved round by round, at 1 and 3 rows; it also
says whether the unpadded graph's single-row logits equal its multi-row logits on this CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _setup  # noqa: E402


def step_ms(runner, rows: int, steps: int = 60) -> float:
    """Median-free mean ms of one step for `rows` rows of a 17-token context."""
    cache = runner.new_cache(rows, 256)
    for slot in range(rows):
        runner.prefill(cache, slot, list(range(1 + slot, 18 + slot)))
    tokens = np.ones(rows, dtype=np.int64)
    for _ in range(5):
        runner.step(cache, tokens)
    start = time.perf_counter()
    for _ in range(steps):
        runner.step(cache, tokens)
    return (time.perf_counter() - start) / steps * 1e3


def single_row_equals_batch(runner) -> bool:
    """Row 0's logits alone vs beside another row, bitwise, over a few steps."""
    alone, pair = runner.new_cache(1, 64), runner.new_cache(2, 64)
    runner.prefill(alone, 0, list(range(5, 25)))
    runner.prefill(pair, 0, list(range(5, 25)))
    runner.prefill(pair, 1, list(range(40, 47)))
    for step in range(8):
        a = runner.step(alone, np.array([100 + step])).copy()
        b = runner.step(pair, np.array([100 + step, 7]))[0]
        if not np.array_equal(a[0], b):
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/pad_rows.py", description=__doc__.split("\n")[0])
    p.add_argument("--random-init", choices=sorted(_setup.ARCHITECTURES), default="gpt-neo-125m")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--cache-dir", type=Path, default=_setup.DEFAULT_CACHE)
    p.add_argument("--tokenizer", type=Path, default=_setup.SHARED_GPT2)
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)

    import onnx

    from export.decode.checkpoint import read_checkpoint
    from export.decode.graph import build_decode_graph
    from generation.runners.decode_graph import DecodeRunner
    from generation.runners.session import create_session

    torch_dir, onnx_dir = _setup.prepare_random_init(args.random_init, args.cache_dir,
                                                     args.tokenizer, False)
    meta = json.loads((onnx_dir / "decode.json").read_text())
    config, weights = read_checkpoint(torch_dir)
    with tempfile.TemporaryDirectory() as tmp:
        unpadded = Path(tmp) / "decode_int4_unpadded.onnx"
        graph = build_decode_graph(config, weights, "int4", meta["block_sizes"]["int4"],
                                   pad_rows=False, window_cache=bool(meta.get("window_cache")))
        onnx.save(graph, unpadded, save_as_external_data=True, location=unpadded.name + ".data")
        runners = {name: DecodeRunner(create_session(str(path), "cpu")[0]) for name, path in
                   (("padded", onnx_dir / meta["files"]["int4"]), ("unpadded", unpadded))}
        times = {(name, rows): [] for name in runners for rows in (1, 3)}
        for _ in range(args.rounds):
            for (name, rows), found in times.items():
                found.append(step_ms(runners[name], rows))
        invariant = {name: single_row_equals_batch(r) for name, r in runners.items()}
    result = {"model": args.random_init, "load_average_1m": _setup.machine_info(0)["load_average_1m_at_start"],
              "ms_per_step_median": {f"{n} {r} rows": round(statistics.median(v), 3)
                                     for (n, r), v in times.items()},
              "single_row_equals_batch": invariant, "rounds": args.rounds}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
