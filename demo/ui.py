"""The page and the API: a Gradio Blocks app made from COLUMNS around one server."""

from __future__ import annotations

import gradio as gr

from generation.serve import Server

from .columns import ADVANCED, COLUMNS, MAX_NEW, SEED, Knob, api_knobs, generate_columns
from .guard import APP_KWARGS, bound_event_log, check_input_count
from .handlers import column_endpoint, generate_endpoint, view_handler
from .view import model_panel

EXAMPLES = [
    "In this paper, we propose a novel method for",
    "Deep neural networks have achieved remarkable success in",
    "We study the problem of scheduling jobs on parallel machines",
    "Graph neural networks are a powerful tool for",
    "Recent advances in reinforcement learning have shown that",
    "We present a distributed algorithm for consensus in",
]
CSS = ".stats p { font-size: 0.85em; margin: 0; }"
# The demo has no file input, so Gradio's upload route (open to anyone on a public Space,
# and served back under /gradio_api/file=) takes no bytes at all.
MAX_UPLOAD_BYTES = 0


def slider(knob: Knob) -> gr.Slider:
    """The knob's slider."""
    return gr.Slider(knob.minimum, knob.maximum, value=knob.default, step=knob.step, label=knob.label)


def _outputs(key: str, label: str) -> tuple[gr.Textbox, gr.Markdown, gr.HighlightedText]:
    """One column's text, stats line and probability-shaded tokens (elem ids `KEY-text` etc.)."""
    text = gr.Textbox(label=f"{label}: continuation", lines=8, max_lines=20, interactive=False,
                      buttons=["copy"], elem_id=f"{key}-text")
    stats = gr.Markdown("&nbsp;", elem_id=f"{key}-stats", elem_classes="stats")
    shaded = gr.HighlightedText(label="tokens shaded by probability (darker = the model was surer)",
                                show_legend=False, show_inline_category=False, elem_id=f"{key}-shaded")
    return text, stats, shaded


def build_demo(server: Server) -> gr.Blocks:
    """The Blocks app around one server (shared, read-only, by every request)."""
    titles = " vs ".join(c.title for c in COLUMNS)
    with gr.Blocks(title="GPT-Neo decoding side by side", analytics_enabled=False) as demo:
        gr.Markdown(f"# {titles}\nOne prompt, {len(COLUMNS)} decoding strategies, one batched "
                    "pass of the model: see how the choice of the next token changes the text.")
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=300):
                prompt = gr.Textbox(label="prompt: the opening of an abstract", lines=3, value=EXAMPLES[0])
                gr.Examples(EXAMPLES, inputs=prompt, label="examples")
            with gr.Column(scale=1, min_width=240):
                max_new = slider(MAX_NEW)
                seed = gr.Number(SEED.default, precision=0, minimum=0, label=SEED.label)
                with gr.Row():
                    go = gr.Button("Generate", variant="primary")
                    stop = gr.Button("Stop", variant="stop")
                    clear = gr.ClearButton(value="Clear")
        with gr.Accordion("advanced: min-p and repetition penalty (all columns)", open=False), gr.Row():
            advanced = [slider(k) for k in ADVANCED]
        knobs = []
        with gr.Row(equal_height=True):
            for column in COLUMNS:
                with gr.Column(min_width=280):
                    gr.Markdown(f"### {column.title}\n{column.description}")
                    knobs += [slider(k) for k in column.knobs]
        columns = []
        with gr.Row(equal_height=False):
            for column in COLUMNS:
                with gr.Column(min_width=280):
                    columns.append(_outputs(column.key, column.label))
        with gr.Accordion("model", open=True):
            gr.Markdown(model_panel(server.engine.info))
        outs = [o[i] for i in range(3) for o in columns]
        inputs = [prompt, max_new, seed, *knobs, *advanced]
        # preprocess=False everywhere: the handlers check what was sent (a Textbox would make
        # a list a str, a Slider would compare "nan"), by the same rules as the API's.
        event = go.click(view_handler(server), inputs, outs, api_name="generate_view",
                         api_visibility="private", preprocess=False)
        prompt.submit(view_handler(server), inputs, outs, api_name="generate_view_submit",
                      api_visibility="private", preprocess=False)
        # A handler that does nothing (Gradio cancels the run): with none, a raw call of
        # /gradio_api/call/stop is Gradio's "function has no backend method" traceback.
        stop.click(lambda *_: None, None, None, cancels=[event], api_name="stop",
                   api_visibility="private", show_progress="hidden")
        clear.add([prompt, *outs])
        _api_endpoints(server)
    check_input_count(demo)
    return demo


def _api_endpoints(server: Server) -> None:
    """The gradio_client endpoints, on hidden components of their own (inputs in the README's
    order): /generate (the first columns' texts), then one per column."""
    with gr.Group(visible=False):
        trigger = gr.Button()
        prompt = gr.Textbox(label="prompt")
        boxes = {k.name: gr.Number(k.default, label=k.name, precision=0 if k.whole else None)
                 for k in [MAX_NEW, *api_knobs(COLUMNS)]}
        texts = {c.key: gr.Textbox(label=c.key) for c in COLUMNS}
    endpoints = [(generate_endpoint(server), "generate", generate_columns())]
    endpoints += [(column_endpoint(server, c), c.endpoint, [c]) for c in COLUMNS]
    for fn, name, served in endpoints:
        inputs = [prompt] + [boxes[k.name] for k in [MAX_NEW, *api_knobs(served)]]
        outputs = texts[served[0].key] if name != "generate" else [texts[c.key] for c in served]
        trigger.click(fn, inputs, outputs, api_name=name, api_description=fn.__doc__,
                      show_progress="hidden", preprocess=False)
    stats = gr.JSON(visible=False)
    trigger.click(server.stats, None, stats, api_name="serving_stats",
                  api_visibility="undocumented", show_progress="hidden")


def launch(demo: gr.Blocks, server: Server, host: str | None, port: int | None, share: bool) -> None:
    """Serve the page until interrupted, with queue limits that follow the serving mode."""
    config, threads = server.config, 40
    if not config.batched:
        demo.queue(max_size=config.queue_size, default_concurrency_limit=config.concurrency)
    else:
        # Handlers only wait on their request's stream: let every request in flight or waiting
        # hold one; the loop bounds the work and answers "busy" beyond queue_size.
        demo.queue(max_size=None, default_concurrency_limit=None)
        threads = config.max_rows + config.queue_size + 8
    bound_event_log(demo)
    demo.launch(server_name=host, server_port=port, share=share, max_threads=threads,
                theme=gr.themes.Soft(), css=CSS, footer_links=["api"], max_file_size=MAX_UPLOAD_BYTES,
                app_kwargs=dict(APP_KWARGS))
