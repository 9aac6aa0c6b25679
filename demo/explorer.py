"""The page's explorer events: the candidate panel, forks, the breadcrumb and share links.

Every handler reads and writes the session's own gr.State (the finished run, the selected
piece, the breadcrumb): nothing of one visitor's run is kept where another's can see it.
"""

from __future__ import annotations

import gradio as gr

from . import fork, share
from .columns import COLUMNS
from .handlers import rejected
from .panel import panel_html, selected_entry, shown_token

NO_SELECTION = "Click a token in a column's shaded view (or Tab to it and press Enter) to see its candidates."


def select_handler(tokenizer, column: int):
    """The `.select` handler of one column's shaded view: (run) -> the panel, its candidate
    choices and the selection (column, piece)."""

    # gr.EventData, not gr.SelectData: Gradio builds a SelectData by indexing the event's data
    # before any handler runs, so a raw call without it would be a traceback, not a refusal.
    def select(run: dict | None, evt: gr.EventData):
        data = evt._data if isinstance(evt._data, dict) else {}
        index = data.get("index")
        index = index if isinstance(index, int) and not isinstance(index, bool) else -1
        found = None if not run else selected_entry(tokenizer, run, column, index)
        if found is None:
            return (NO_SELECTION + " (no candidates for that token yet: wait for the run to end)",
                    gr.update(choices=[], value=None), None)
        piece, entry = found
        choices = [(f"{i + 1}. {shown_token(c['text'])}", i) for i, c in enumerate(entry["candidates"])]
        return (panel_html(COLUMNS[column].title, index, piece, entry),
                gr.update(choices=choices, value=0), (column, index))

    return select


def fork_handler(tokenizer):
    """The "continue with this token" handler: (run, selection, candidate, history) -> the new
    prompt and the run's controls, and the fork's breadcrumb label (pushed once it ran)."""

    def do_fork(run: dict | None, selection, candidate, history):
        if not run or selection is None or candidate is None:
            raise rejected("Pick a token and one of its candidates first.")
        column, index = selection
        found = selected_entry(tokenizer, run, column, index)
        if found is None or not isinstance(candidate, int) or not 0 <= candidate < len(found[1]["candidates"]):
            raise rejected("That candidate is not in this run any more.")
        text = found[1]["candidates"][candidate]["text"]
        pieces = [p for p, _ in run["columns"][column]["pieces"]]
        prompt = fork.fork_prompt(run["prompt"], pieces, index, text)
        label = fork.fork_label(COLUMNS[column].title, index, text)
        return [prompt, *run["values"], label]

    return do_fork


def record_handler(fixed_label: str | None = None):
    """Pushes the run that just ended onto the breadcrumb: (label, prompt, *controls, history)
    -> (history, the breadcrumb's radio)."""

    def record(label, prompt, *rest):
        *values, history = rest
        new = fork.entry(fixed_label or label or fork.run_label(prompt), prompt, values)
        history = fork.push(history, new)
        return history, gr.update(choices=fork.choices(history), value=len(history) - 1)

    return record


def restore(history, picked):
    """A breadcrumb entry picked: its prompt and controls (the run follows)."""
    if not history or not isinstance(picked, int) or not 0 <= picked < len(history):
        raise rejected("That run is no longer in the breadcrumb.")
    chosen = history[picked]
    return [chosen["prompt"], *chosen["values"]]


def share_query(prompt, *values) -> str:
    """The share link's query string for the controls (the browser adds its address)."""
    names = [name for name, _ in share.page_controls()]
    bad = [n for (n, k), v in zip(share.page_controls(), values, strict=False) if k.check(v)[1]]
    if not isinstance(prompt, str) or len(values) != len(names) or bad:
        raise rejected("Cannot share: " + (", ".join(bad) or "the settings") + " not valid.")
    return share.query_string(prompt, values)


def from_link(request: gr.Request):
    """The page opened: a share link's controls, the note about what was not taken, and
    whether to run (only when the link had a prompt)."""
    query = dict(request.query_params) if request is not None else {}
    if not query:
        return [gr.skip()] * (len(share.page_controls()) + 1) + ["", False]
    prompt, values, notes = share.read_query(query)
    return [prompt if prompt is not None else gr.skip(), *values,
            share.notes_markdown(notes), prompt is not None]


def page_run(view_fn, gated: bool = False):
    """The page's run: the view handler's outputs, then the panel, its choices and the
    selection, cleared when the run starts (they belong to the previous run).

    Args:
        view_fn: the view handler.
        gated: the run takes a first input saying whether to run at all (a page opened
            without a share link does not).
    """
    skipped = len(COLUMNS) * 3 + sum(c.beam for c in COLUMNS) + 4

    def run(*args):
        cleared = [NO_SELECTION, gr.update(choices=[], value=None), None]
        for i, out in enumerate(view_fn(*args)):
            yield [*out, *(cleared if i == 0 else [gr.skip()] * 3)]

    def run_if(go: bool, *args):
        if go is True:
            yield from run(*args)
        else:
            yield [gr.skip()] * skipped

    return run_if if gated else run
