"""The page and the API: a Gradio Blocks app made from COLUMNS around one server."""

from __future__ import annotations

import gradio as gr

from generation.serve import Server

from . import explorer, share
from .columns import (
    ADVANCED,
    CANDIDATES,
    COLUMNS,
    MAX_NEW,
    SEED,
    Column,
    Knob,
    api_knobs,
    generate_columns,
)
from .endpoints import explain_endpoint
from .guard import (
    APP_KWARGS,
    bound_event_log,
    check_input_count,
    import_matplotlib_now,
    lazy_session_configs,
)
from .handlers import column_endpoint, generate_endpoint, view_handler
from .panel import PANEL_CSS
from .view import model_panel

EXAMPLES = [
    "In this paper, we propose a novel method for",
    "Deep neural networks have achieved remarkable success in",
    "We study the problem of scheduling jobs on parallel machines",
    "Graph neural networks are a powerful tool for",
    "Recent advances in reinforcement learning have shown that",
    "We present a distributed algorithm for consensus in",
]
CSS = ".stats p { font-size: 0.85em; margin: 0; } " + PANEL_CSS
# The demo has no file input, so Gradio's upload route (open to anyone on a public Space,
# and served back under /gradio_api/file=) takes no bytes at all.
MAX_UPLOAD_BYTES = 0


def slider(knob: Knob) -> gr.Slider:
    """The knob's slider."""
    return gr.Slider(knob.minimum, knob.maximum, value=knob.default, step=knob.step, label=knob.label)


def _outputs(column: Column) -> list:
    """One column's text, stats line and probability-shaded tokens (elem ids `KEY-text` etc.),
    and a beam column's table of hypotheses (`KEY-hypotheses`)."""
    key, label = column.key, column.label
    text = gr.Textbox(label=f"{label}: continuation", lines=8, max_lines=20, interactive=False,
                      buttons=["copy"], elem_id=f"{key}-text")
    stats = gr.Markdown("&nbsp;", elem_id=f"{key}-stats", elem_classes="stats")
    shaded = gr.HighlightedText(label="tokens shaded by probability (darker = the model was surer; "
                                "click one for its candidates)",
                                show_legend=False, show_inline_category=False, elem_id=f"{key}-shaded")
    hyps = [gr.Markdown("&nbsp;", elem_id=f"{key}-hypotheses", label="finished hypotheses")] if column.beam else []
    return [text, stats, shaded, *hyps]


def _controls() -> tuple:
    """The prompt, its buttons and every setting, in `share.page_controls()` order."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=300):
            prompt = gr.Textbox(label="prompt: the opening of an abstract", lines=3, value=EXAMPLES[0],
                                elem_id="prompt")
            gr.Examples(EXAMPLES, inputs=prompt, label="examples")
        with gr.Column(scale=1, min_width=240):
            max_new = slider(MAX_NEW)
            seed = gr.Number(SEED.default, precision=0, minimum=0, label=SEED.label)
            with gr.Row():
                buttons = {name: gr.Button(name, variant=v) for name, v in
                           [("Generate", "primary"), ("Stop", "stop"), ("Share", "secondary")]}
                buttons["Clear"] = gr.ClearButton(value="Clear")
    link = gr.Textbox(label="share link: opens this run's prompt and settings", buttons=["copy"],
                      interactive=False, elem_id="share-link")
    note = gr.Markdown("", elem_id="share-note")
    with gr.Accordion("advanced: min-p and repetition penalty (the columns that take them)",
                      open=False), gr.Row():
        advanced = [slider(k) for k in ADVANCED]
    knobs = []
    with gr.Row(equal_height=True):
        for column in COLUMNS:
            with gr.Column(min_width=220):
                gr.Markdown(f"### {column.title}\n{column.description}")
                knobs += [slider(k) for k in column.knobs]
    return prompt, [max_new, seed, *knobs, *advanced], buttons, link, note


def build_demo(server: Server) -> gr.Blocks:
    """The Blocks app around one server (shared, read-only, by every request)."""
    titles = " vs ".join(c.title for c in COLUMNS)
    tokenizer = server.engine.tokenizer
    with gr.Blocks(title="GPT-Neo decoding side by side", analytics_enabled=False) as demo:
        gr.Markdown(f"# {titles}\nOne prompt, {len(COLUMNS)} decoding strategies, one batched "
                    "pass of the model: see how the choice of the next token changes the text.")
        prompt, controls, buttons, link, note = _controls()
        columns = []
        with gr.Row(equal_height=False):
            for column in COLUMNS:
                with gr.Column(min_width=220):
                    columns.append(_outputs(column))
        with gr.Group(elem_id="candidate-panel"):
            panel = gr.HTML(explorer.NO_SELECTION, elem_id="candidates")
            with gr.Row():
                choice = gr.Radio([], label="continue with this token instead", elem_id="fork-choice")
                fork_button = gr.Button("Continue with this token", elem_id="fork")
        breadcrumb = gr.Radio([], label="runs and forks (newest last): pick one to run it again",
                              elem_id="breadcrumb")
        with gr.Accordion("model", open=True):
            gr.Markdown(model_panel(server.engine.info))
        run, selection, history, label = gr.State(None), gr.State(None), gr.State([]), gr.State(None)
        no_label, autorun = gr.State(None), gr.State(False)
        outs = [o[i] for i in range(3) for o in columns] + [o[3] for o in columns if len(o) > 3]
        inputs = [prompt, *controls]
        view_outs = [*outs, run, panel, choice, selection]
        page_run = explorer.page_run(view_handler(server))
        # preprocess=False everywhere: the handlers check what was sent (a Textbox would make
        # a list a str, a Slider would compare "nan"), by the same rules as the API's.
        private = {"api_visibility": "private", "preprocess": False}
        record = (explorer.record_handler(), [no_label, *inputs, history], [history, breadcrumb])
        runs = []
        for name, trigger in [("generate_view", buttons["Generate"].click), ("generate_view_submit", prompt.submit)]:
            runs.append(trigger(page_run, inputs, view_outs, api_name=name, **private))
            runs[-1].success(*record, api_name=f"{name}_record", **private)
        for i, col in enumerate(columns):
            col[2].select(explorer.select_handler(tokenizer, i), [run], [panel, choice, selection],
                          api_name=f"select_{COLUMNS[i].key}", **private)
        forked = fork_button.click(explorer.fork_handler(tokenizer), [run, selection, choice, history],
                                   [*inputs, label], api_name="fork", **private)
        runs.append(forked.success(page_run, inputs, view_outs, api_name="fork_run", **private))
        runs[-1].success(explorer.record_handler(), [label, *inputs, history], [history, breadcrumb],
                         api_name="fork_record", **private)
        restored = breadcrumb.input(explorer.restore, [history, breadcrumb], inputs,
                                    api_name="restore", **private)
        runs.append(restored.success(page_run, inputs, view_outs, api_name="restore_run", **private))
        # The server writes the query string into the link box, the browser puts its own address
        # in front (see share.py).
        buttons["Share"].click(explorer.share_query, inputs, link, api_name="share", **private).then(
            None, link, link, js=share.SHARE_JS, api_name="share_link", **private)
        loaded = demo.load(explorer.from_link, None, [*inputs, note, autorun], api_name="open_link", **private)
        link_run = explorer.page_run(view_handler(server), gated=True)
        runs.append(loaded.then(link_run, [autorun, *inputs], view_outs, api_name="open_link_run", **private))
        # A handler that does nothing (Gradio cancels the run): with none, a raw call of
        # /gradio_api/call/stop is Gradio's "function has no backend method" traceback.
        buttons["Stop"].click(lambda *_: None, None, None, cancels=runs, api_name="stop",
                              show_progress="hidden", **private)
        buttons["Clear"].add([prompt, *outs, link])
        _api_endpoints(server)
    check_input_count(demo)
    return demo


def _api_endpoints(server: Server) -> None:
    """The gradio_client endpoints, on hidden components of their own (inputs in the README's
    order): /generate (the first columns' texts), one per column, /generate_all (every
    column's text) and /explain (every column's tokens and their candidates, JSON)."""
    with gr.Group(visible=False):
        trigger = gr.Button()
        prompt = gr.Textbox(label="prompt")
        boxes = {k.name: gr.Number(k.default, label=k.name, precision=0 if k.whole else None)
                 for k in [MAX_NEW, *api_knobs(COLUMNS), CANDIDATES]}
        texts = {c.key: gr.Textbox(label=c.key) for c in COLUMNS}
        explained = gr.JSON(label="explain")
    endpoints = [(generate_endpoint(server), "generate", generate_columns())]
    endpoints += [(column_endpoint(server, c), c.endpoint, [c]) for c in COLUMNS]
    endpoints += [(generate_endpoint(server, COLUMNS, "generate_all"), "generate_all", COLUMNS)]
    for fn, name, served in endpoints:
        inputs = [prompt] + [boxes[k.name] for k in [MAX_NEW, *api_knobs(served)]]
        outputs = [texts[c.key] for c in served] if name.startswith("generate") else texts[served[0].key]
        trigger.click(fn, inputs, outputs, api_name=name, api_description=fn.__doc__,
                      show_progress="hidden", preprocess=False, postprocess=False)
    explain = explain_endpoint(server)
    trigger.click(explain, [prompt, *(boxes[k.name] for k in [MAX_NEW, *api_knobs(COLUMNS), CANDIDATES])],
                  explained, api_name="explain", api_description=explain.__doc__, show_progress="hidden",
                  preprocess=False)
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
    import_matplotlib_now()
    lazy_session_configs()
    demo.launch(server_name=host, server_port=port, share=share, max_threads=threads,
                theme=gr.themes.Soft(), css=CSS, footer_links=["api"], max_file_size=MAX_UPLOAD_BYTES,
                app_kwargs=dict(APP_KWARGS))
