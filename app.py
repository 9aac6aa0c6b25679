"""The demo: greedy, sampling and top-k/top-p decoding of one prompt side by side, streaming.

    python app.py [--model PATH_OR_HUB_ID] [--host HOST] [--port PORT] [--share]

`MODEL_ID` in the environment does what `--model` does (for the Space); the default is the
bundled `demo_model/` beside this file, so the demo runs offline.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path

import gradio as gr

from generation import Engine, SamplingParams
from generation.params import prompt_problems
from generation.scheduler import Busy, Scheduler

HERE = Path(__file__).resolve().parent
MODEL_ID = os.environ.get("MODEL_ID", str(HERE / "demo_model"))
PRECISION = os.environ.get("PRECISION") or None  # fp32 | int8 | int4; None: int8 when present
PROVIDER = os.environ.get("PROVIDER") or None  # cpu | cuda; None: CUDA only where it works
# Serving: "batched" (default) decodes every request's rows in one loop, one batched forward
# per step (generation/scheduler.py); "per-request" runs each request's own batch, CONCURRENCY
# (default: the CPU cores) at a time, as before (kept to compare the two: bench/serve.py).
SERVING = os.environ.get("SERVING", "batched")
MAX_ROWS = int(os.environ.get("MAX_ROWS", "48"))  # rows decoding at once (a /generate is 3)
# Memory for the rows' caches (every row at full context), which caps the rows in flight;
# unset: a quarter of the machine's memory.
CACHE_MEMORY_MB = float(os.environ["CACHE_MEMORY_MB"]) if os.environ.get("CACHE_MEMORY_MB") else None
PREFILL_CHUNK = int(os.environ.get("PREFILL_CHUNK", "64"))  # prompt tokens per step while others decode
STREAM_INTERVAL_S = float(os.environ.get("STREAM_INTERVAL_S", "0.03"))  # updates merged within this
CONCURRENCY = int(os.environ.get("CONCURRENCY", str(os.cpu_count() or 1)))  # per-request mode only
QUEUE_SIZE = int(os.environ.get("QUEUE_SIZE", "64"))
REQUEST_TIME_LIMIT_S = float(os.environ.get("REQUEST_TIME_LIMIT_S", "120"))
MAX_NEW_TOKENS = 512
MAX_PROMPT_CHARS = 4000
MAX_TOP_K = 1_000_000  # above any vocabulary (k >= vocabulary = off); more is nonsense
# The demo has no file input, so Gradio's upload route (open to anyone on a public Space,
# and served back under /gradio_api/file=) takes no bytes at all.
MAX_UPLOAD_BYTES = 0
UI_REFRESH_S = 0.05  # the browser view is redrawn at most this often (the API gets every step)

EXAMPLES = [
    "In this paper, we propose a novel method for",
    "Deep neural networks have achieved remarkable success in",
    "We study the problem of scheduling jobs on parallel machines",
    "Graph neural networks are a powerful tool for",
    "Recent advances in reinforcement learning have shown that",
    "We present a distributed algorithm for consensus in",
]
CSS = ".stats p { font-size: 0.85em; margin: 0; }"


def _is_int(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and float(value).is_integer()


def rejected(message: str) -> gr.Error:
    """The gr.Error for a request the user must fix, logged as one line (not a traceback)."""
    print(f"app.py: rejected request: {message}", file=sys.stderr, flush=True)
    return gr.Error(message, print_exception=False)


def check_request(
    prompt: object, max_new_tokens: object, temperature: object, top_k: object,
    top_p: object, seed: object,
) -> None:
    """Refuse a request the demo cannot serve, naming every problem at once.

    Raises:
        gr.Error: listing each bad input.
    """
    problems = []
    if not isinstance(prompt, str) or not prompt.strip():
        problems.append("the prompt is empty: type the opening of an abstract")
    elif prompt_problems(prompt):  # JSON escapes can smuggle in lone surrogates
        problems.append("the prompt is not valid Unicode text")
    elif len(prompt) > MAX_PROMPT_CHARS:
        problems.append(f"the prompt has {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}")
    if not _is_int(max_new_tokens) or not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        problems.append(f"max_new_tokens must be a whole number from 1 to {MAX_NEW_TOKENS}, got {max_new_tokens!r}")
    if not isinstance(temperature, int | float) or not math.isfinite(temperature) or temperature < 0:
        problems.append(f"temperature must be a number >= 0 (0 = greedy), got {temperature!r}")
    if not _is_int(top_k) or not 0 <= top_k <= MAX_TOP_K:
        problems.append(f"top_k must be a whole number from 0 to {MAX_TOP_K} (0 = off), got {top_k!r}")
    if not isinstance(top_p, int | float) or not 0 < top_p <= 1:
        problems.append(f"top_p must be in (0, 1] (1 = off), got {top_p!r}")
    if not _is_int(seed) or seed < 0:
        problems.append(f"seed must be a whole number >= 0, got {seed!r}")
    if problems:
        raise rejected("Cannot generate: " + "; ".join(problems) + ".")


_SCHEDULERS: dict[int, Scheduler] = {}


def scheduler_of(engine: Engine) -> Scheduler | None:
    """The engine's scheduler in batched serving (made on first use); None per request."""
    if SERVING == "per-request":
        return None
    if id(engine) not in _SCHEDULERS:
        _SCHEDULERS[id(engine)] = Scheduler(
            engine, max_rows=MAX_ROWS, cache_mb=CACHE_MEMORY_MB, queue_size=QUEUE_SIZE,
            time_limit_s=REQUEST_TIME_LIMIT_S, prefill_chunk=PREFILL_CHUNK)
    return _SCHEDULERS[id(engine)]


def stream_rows(engine: Engine, prompt: str, params: Sequence[SamplingParams], max_new_tokens: int):
    """The request's updates with the demo's rules: errors as gr.Error, a time cap per request.

    Raises:
        gr.Error: when the engine refuses the settings (e.g. min-p outside [0, 1]), the server
            is busy, or the engine failed on this request.
    """
    scheduler = scheduler_of(engine)
    if scheduler is None:
        yield from _stream_alone(engine, prompt, params, max_new_tokens)
        return
    try:
        handle = scheduler.submit(prompt, params, int(max_new_tokens))
    except Busy as err:
        raise rejected(f"Busy: {err}.") from err
    except ValueError as err:
        raise rejected(f"Cannot generate: {err}") from err
    if handle.prompt_truncated:
        gr.Warning(f"The prompt was cut: its first {handle.prompt_truncated} tokens do not fit the context.")
    try:
        # Merged updates: each costs Gradio ~4 ms of CPU, more than a decoding step. The interval
        # grows with the requests streaming (16 ms each) so that Gradio keeps to about a
        # quarter of one core whatever the load, and the cores go to the model.
        yield from handle.updates(lambda: max(STREAM_INTERVAL_S, 0.016 * len(scheduler.running)))
    except Exception as err:  # noqa: BLE001 - the engine failed on this request only
        raise gr.Error(f"Generation failed: {err}") from err
    if handle.timed_out:
        gr.Warning(f"Stopped at the {REQUEST_TIME_LIMIT_S:.0f} s limit per request.")


def _stream_alone(engine: Engine, prompt: str, params: Sequence[SamplingParams], max_new_tokens: int):
    """Per-request serving: the request runs its own batch on the shared session."""
    deadline = time.monotonic() + REQUEST_TIME_LIMIT_S
    try:
        for step, update in enumerate(engine.stream(prompt, params, int(max_new_tokens))):
            if step == 0 and update.prompt_truncated:
                gr.Warning(f"The prompt was cut: its first {update.prompt_truncated} tokens do not fit the context.")
            yield update
            if time.monotonic() > deadline:
                gr.Warning(f"Stopped at the {REQUEST_TIME_LIMIT_S:.0f} s limit per request.")
                return
    except ValueError as err:
        raise rejected(f"Cannot generate: {err}") from err


def strategies(temperature: float, top_k: int, top_p: float, seed: int, *, min_p: float = 0.0,
               repetition_penalty: float = 1.0, top_temperature: float | None = None) -> list[SamplingParams]:
    """The three columns: greedy, plain sampling at `temperature`, and temperature + top-k + top-p.

    `top_temperature` gives the third column its own temperature (the UI has one per column).
    """
    shared = {"min_p": float(min_p), "repetition_penalty": float(repetition_penalty), "seed": int(seed)}
    t_top = temperature if top_temperature is None else top_temperature
    return [
        SamplingParams(temperature=0.0, **shared),
        SamplingParams(temperature=float(temperature), **shared),
        SamplingParams(temperature=float(t_top), top_k=int(top_k), top_p=float(top_p), **shared),
    ]


def generate(engine: Engine, prompt: str, max_new_tokens: int, temperature: float, top_k: int,
             top_p: float, seed: int) -> Iterator[tuple[str, str, str]]:
    """API `/generate`: the three continuations (greedy, sampling, top_k_top_p), growing."""
    check_request(prompt, max_new_tokens, temperature, top_k, top_p, seed)
    for update in stream_rows(engine, prompt, strategies(temperature, top_k, top_p, seed), max_new_tokens):
        yield tuple(row.text for row in update.rows)


def one_row(engine: Engine, params: SamplingParams, prompt: str, max_new_tokens: int) -> Iterator[str]:
    """One strategy's growing text."""
    for update in stream_rows(engine, prompt, [params], max_new_tokens):
        yield update.rows[0].text


def greedy(engine: Engine, prompt: str, max_new_tokens: int) -> Iterator[str]:
    """API `/greedy`: the most likely token at every step."""
    check_request(prompt, max_new_tokens, 0.0, 0, 1.0, 0)
    yield from one_row(engine, SamplingParams(temperature=0.0), prompt, max_new_tokens)


def sample(engine: Engine, prompt: str, max_new_tokens: int, temperature: float, seed: int) -> Iterator[str]:
    """API `/sample`: sampling from the whole distribution at `temperature`."""
    check_request(prompt, max_new_tokens, temperature, 0, 1.0, seed)
    yield from one_row(engine, strategies(temperature, 0, 1.0, seed)[1], prompt, max_new_tokens)


def top_k_top_p(engine: Engine, prompt: str, max_new_tokens: int, temperature: float, top_k: int,
                top_p: float, seed: int) -> Iterator[str]:
    """API `/top_k_top_p`: sampling at `temperature` from the top-k tokens within top-p mass."""
    check_request(prompt, max_new_tokens, temperature, top_k, top_p, seed)
    yield from one_row(engine, strategies(temperature, top_k, top_p, seed)[2], prompt, max_new_tokens)


def stats_line(row) -> str:
    """One line under a column: new tokens, time to first token, tokens/s, why it stopped."""
    s = row.stats
    why = {"eos": " · ended (EOS)", "length": " · max tokens"}.get(row.finish_reason or "", "")
    return f"**{s.new_tokens}** new tokens · TTFT **{s.ttft_s * 1000:.0f} ms** · **{s.tokens_per_s:.1f}** tok/s{why}"


def generate_view(engine: Engine, prompt: str, max_new_tokens: int, seed: int, t_sample: float,
                  t_top: float, top_k: int, top_p: float, min_p: float,
                  repetition_penalty: float) -> Iterator[list]:
    """The browser's view of one click: per column its text, stats and tokens shaded by probability."""
    check_request(prompt, max_new_tokens, min(t_sample, t_top), top_k, top_p, seed)
    params = strategies(t_sample, top_k, top_p, seed, min_p=min_p,
                        repetition_penalty=repetition_penalty, top_temperature=t_top)
    last, rows = 0.0, None
    for update in stream_rows(engine, prompt, params, max_new_tokens):
        rows = update.rows
        if time.monotonic() - last >= UI_REFRESH_S:
            last = time.monotonic()
            yield view(rows)
            rows = None
    if rows is not None:  # the last state, if the refresh limit skipped it
        yield view(rows)


def view(rows) -> list:
    """Texts, stats lines and (piece, probability) lists, in the order of the UI's outputs."""
    return ([r.text for r in rows] + [stats_line(r) for r in rows]
            + [[(piece, round(prob, 3)) for piece, prob in r.pieces] for r in rows])


def shown_model(model: str) -> str:
    """The model as the page shows it: a Hub id as is, a local directory relative to app.py,
    or (outside it) only its folder name, so the server's paths stay private."""
    path = Path(model).expanduser()
    if not path.exists():
        return model
    path = path.resolve()
    return path.relative_to(HERE).as_posix() if path.is_relative_to(HERE) else path.name


def _shown_file(info: dict) -> str:
    """The ONNX file relative to its model directory (else its name)."""
    path, model = Path(str(info.get("onnx_file"))), Path(str(info.get("model"))).expanduser()
    if model.exists() and path.resolve().is_relative_to(model.resolve()):
        return path.resolve().relative_to(model.resolve()).as_posix()
    return path.name


def model_panel(info: dict) -> str:
    """The model panel's Markdown table, from `engine.info`."""
    params = info.get("parameters", 0)
    rows = [("model", f"`{shown_model(str(info.get('model')))}`"), ("ONNX file", f"`{_shown_file(info)}`"),
            ("precision", info.get("precision")), ("provider", info.get("provider")),
            ("parameters", f"{params:,}"), ("context", f"{info.get('context')} tokens"),
            ("layers", info.get("layers")), ("vocabulary", info.get("vocab_size"))]
    return "| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def _outputs(key: str, label: str) -> tuple[gr.Textbox, gr.Markdown, gr.HighlightedText]:
    """One column's text, stats line and probability-shaded tokens (elem ids `KEY-text` etc.)."""
    text = gr.Textbox(label=f"{label}: continuation", lines=8, max_lines=20, interactive=False,
                      buttons=["copy"], elem_id=f"{key}-text")
    stats = gr.Markdown("&nbsp;", elem_id=f"{key}-stats", elem_classes="stats")
    shaded = gr.HighlightedText(label="tokens shaded by probability (darker = the model was surer)",
                                show_legend=False, show_inline_category=False, elem_id=f"{key}-shaded")
    return text, stats, shaded


def build_demo(engine: Engine) -> gr.Blocks:
    """The Blocks app around one loaded engine (shared, read-only, by every request)."""
    with gr.Blocks(title="GPT-Neo decoding side by side", analytics_enabled=False) as demo:
        gr.Markdown("# Greedy vs sampling vs top-k/top-p\nOne prompt, three decoding strategies, "
                    "one batched pass of the model: see how the choice of the next token changes the text.")
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=300):
                prompt = gr.Textbox(label="prompt: the opening of an abstract", lines=3, value=EXAMPLES[0])
                gr.Examples(EXAMPLES, inputs=prompt, label="examples")
            with gr.Column(scale=1, min_width=240):
                max_new = gr.Slider(1, MAX_NEW_TOKENS, value=64, step=1, label="max new tokens")
                seed = gr.Number(0, precision=0, minimum=0, label="seed (sampling columns)")
                with gr.Row():
                    go = gr.Button("Generate", variant="primary")
                    stop = gr.Button("Stop", variant="stop")
                    clear = gr.ClearButton(value="Clear")
        with gr.Accordion("advanced: min-p and repetition penalty (all columns)", open=False), gr.Row():
                min_p = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="min-p (0 = off)")
                penalty = gr.Slider(1.0, 2.0, value=1.0, step=0.05, label="repetition penalty (1 = off)")
        with gr.Row(equal_height=True):
            with gr.Column(min_width=280):
                gr.Markdown("### Greedy\nalways the most likely token (no knobs)")
            with gr.Column(min_width=280):
                gr.Markdown("### Sampling\na draw from the whole distribution")
                t_sample = gr.Slider(0.0, 2.0, value=0.8, step=0.05, label="temperature")
            with gr.Column(min_width=280):
                gr.Markdown("### Top-k / Top-p\na draw from the k likeliest tokens within mass p")
                t_top = gr.Slider(0.0, 2.0, value=0.8, step=0.05, label="temperature")
                top_k = gr.Slider(0, 200, value=40, step=1, label="top-k (0 = off)")
                top_p = gr.Slider(0.01, 1.0, value=0.9, step=0.01, label="top-p (1 = off)")
        with gr.Row(equal_height=False):
            columns = []
            for key, label in (("greedy", "greedy"), ("sampling", "sampling"), ("top_k_top_p", "top-k / top-p")):
                with gr.Column(min_width=280):
                    columns.append(_outputs(key, label))
            g_out, s_out, k_out = columns
        with gr.Accordion("model", open=True):
            gr.Markdown(model_panel(engine.info))
        outs = [o[i] for i in range(3) for o in (g_out, s_out, k_out)]
        event = go.click(partial(generate_view, engine),
                         [prompt, max_new, seed, t_sample, t_top, top_k, top_p, min_p, penalty], outs,
                         api_name="generate_view", api_visibility="private")
        prompt.submit(partial(generate_view, engine),
                      [prompt, max_new, seed, t_sample, t_top, top_k, top_p, min_p, penalty], outs,
                      api_name="generate_view_submit", api_visibility="private")
        stop.click(None, cancels=[event], api_name="stop", api_visibility="private")
        clear.add([prompt, *outs])
        _api_endpoints(engine)
    return demo


def whole_number(value: int, label: str) -> gr.Number:
    """A Number the API documents as an integer but passes on unrounded, so 1.5 is refused.

    (precision=0 would round 1.5 to 2; a Number subclass would make Gradio write app.pyi.)
    """
    box = gr.Number(value, label=label)
    box.api_info = lambda: {"type": "integer"}
    return box


def _api_endpoints(engine: Engine) -> None:
    """The gradio_client endpoints, on hidden components of their own (inputs in the README's order)."""
    with gr.Group(visible=False):
        trigger = gr.Button()
        prompt, max_new = gr.Textbox(label="prompt"), whole_number(64, label="max_new_tokens")
        temperature, top_k = gr.Number(0.8, label="temperature"), whole_number(40, label="top_k")
        top_p, seed = gr.Number(0.9, label="top_p"), whole_number(0, label="seed")
        texts = [gr.Textbox(label=name) for name in ("greedy", "sampling", "top_k_top_p")]
    for fn, inputs, outputs in [
        (generate, [prompt, max_new, temperature, top_k, top_p, seed], texts),
        (greedy, [prompt, max_new], texts[0]),
        (sample, [prompt, max_new, temperature, seed], texts[1]),
        (top_k_top_p, [prompt, max_new, temperature, top_k, top_p, seed], texts[2]),
    ]:
        trigger.click(partial(fn, engine), inputs, outputs, api_name=fn.__name__,
                      api_description=fn.__doc__, show_progress="hidden")
    stats = gr.JSON(visible=False)
    trigger.click(partial(serving_stats, engine), None, stats, api_name="serving_stats",
                  api_visibility="undocumented", show_progress="hidden")


def serving_stats(engine: Engine) -> dict:
    """The scheduler's counters (rows in flight, requests queued...) and the server's RSS."""
    scheduler = scheduler_of(engine)
    stats = {"serving": SERVING, **(scheduler.stats() if scheduler else {})}
    with open("/proc/self/status") as status:
        rss = next((line.split()[1] for line in status if line.startswith("VmRSS:")), "0")
    return {**stats, "rss_mib": int(rss) / 1024}


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
        engine = Engine.load(args.model, precision=PRECISION, provider=PROVIDER)
    except (OSError, ValueError) as err:
        print(f"app.py: cannot load the model {args.model!r}: {err}", file=sys.stderr)
        return 2
    print(f"app.py: serving {engine.info}", flush=True)
    demo = build_demo(engine)
    threads = 40
    if scheduler_of(engine) is None:
        demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=CONCURRENCY)
    else:
        # Handlers only wait on their request's stream: let every request in flight or waiting
        # hold one; the scheduler bounds the work and answers "busy" beyond QUEUE_SIZE.
        demo.queue(max_size=None, default_concurrency_limit=None)
        threads = MAX_ROWS + QUEUE_SIZE + 8
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, max_threads=threads,
                theme=gr.themes.Soft(), css=CSS, footer_links=["api"],
                max_file_size=MAX_UPLOAD_BYTES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
