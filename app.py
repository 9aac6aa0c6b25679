"""The demo: greedy, sampling, top-k/top-p and beam search of one prompt side by side, streaming.

    python app.py [--model PATH_OR_HUB_ID] [--host HOST] [--port PORT] [--share]

`MODEL_ID` in the environment does what `--model` does (for the Space); the default is the
bundled `demo_model/` beside this file, so the demo runs offline. The other settings come from
the environment too (README: SERVING, MAX_ROWS, CACHE_MEMORY_MB, PREFILL_CHUNK, ...).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from demo.ui import build_demo, launch
from generation import Engine
from generation.serve import ServeConfig, Server

HERE = Path(__file__).resolve().parent
MODEL_ID = os.environ.get("MODEL_ID", str(HERE / "demo_model"))
PRECISION = os.environ.get("PRECISION") or None  # fp32 | int8 | int4; None: the export's default
PROVIDER = os.environ.get("PROVIDER") or None  # cpu | cuda; None: CUDA only where it works


def serve_config(env: Mapping[str, str] = os.environ) -> ServeConfig:
    """The serving policy from the environment (unset: ServeConfig's defaults).

    SERVING: "batched" (one decoding loop for every request) or "per-request" (each its own
    batch, CONCURRENCY at a time); MAX_ROWS: rows decoding at once; CACHE_MEMORY_MB: memory
    for their caches; QUEUE_SIZE: requests waiting before "busy"; REQUEST_TIME_LIMIT_S: the
    time cap of a request; PREFILL_CHUNK: prompt tokens prefilled per step while others decode
    (whole chunks of the engine's fixed 64); STREAM_INTERVAL_S: updates merged within this.
    """
    default = ServeConfig()

    def read(name: str, kind, value):
        return kind(env[name]) if env.get(name) else value

    return ServeConfig(
        mode=env.get("SERVING", default.mode),
        max_rows=read("MAX_ROWS", int, default.max_rows),
        cache_mb=read("CACHE_MEMORY_MB", float, default.cache_mb),
        queue_size=read("QUEUE_SIZE", int, default.queue_size),
        time_limit_s=read("REQUEST_TIME_LIMIT_S", float, default.time_limit_s),
        prefill_budget=read("PREFILL_CHUNK", int, default.prefill_budget),
        stream_interval_s=read("STREAM_INTERVAL_S", float, default.stream_interval_s),
        concurrency=read("CONCURRENCY", int, default.concurrency),
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve the side-by-side decoding demo.")
    parser.add_argument("--model", default=MODEL_ID,
                        help="an export directory or Hub id (default: $MODEL_ID, else the bundled demo_model/)")
    parser.add_argument("--host", default=None, help="address to bind (default: 127.0.0.1, or $GRADIO_SERVER_NAME)")
    parser.add_argument("--port", type=int, default=None, help="port (default: 7860, or $GRADIO_SERVER_PORT)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Load the model, then serve until interrupted. Returns 2 when the model cannot be loaded."""
    args = parse_args(argv)
    if args.model == str(HERE / "demo_model") and not (HERE / "demo_model" / "tokenizer.json").is_file():
        print(f"app.py: the bundled demo model is missing from {HERE / 'demo_model'}; "
              "pass --model PATH_OR_HUB_ID or set MODEL_ID", file=sys.stderr)
        return 2
    try:
        config = serve_config()
        engine = Engine.load(args.model, precision=PRECISION, provider=PROVIDER)
    except (OSError, ValueError) as err:
        print(f"app.py: cannot load the model {args.model!r}: {err}", file=sys.stderr)
        return 2
    print(f"app.py: serving {engine.info}", flush=True)
    server = Server(engine, config)
    launch(build_demo(server), server, args.host, args.port, args.share)
    return 0


if __name__ == "__main__":
    sys.exit(main())
