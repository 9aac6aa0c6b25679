"""The README's gradio_client snippets, run as written against a real server; its table of the
demo's columns, as `python -m demo.columns --markdown` writes it."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import REPO_ROOT

README_URL = "http://127.0.0.1:7860/"


def app_snippets() -> list[str]:
    """The fenced python blocks of the README's `section:app` block, in order."""
    text = (REPO_ROOT / "README.md").read_text()
    section = text[text.index("<!-- section:app -->"):text.index("<!-- /section:app -->")]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_snippets_run_against_the_server(server, tmp_path):
    snippets = app_snippets()
    assert len(snippets) >= 3 and all(README_URL in s or "client." in s for s in snippets)
    script = "\n".join(snippets)
    assert script.count(README_URL) == 1
    path = tmp_path / "readme_snippets.py"
    path.write_text(script.replace(README_URL, server.url))
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "---" in lines  # the predict snippet printed its three texts
    streamed = [line for line in lines if re.fullmatch(r"\d+ \d+ \d+", line)]
    assert len(streamed) >= 2  # the submit snippet saw several growing updates


def test_readme_columns_table_is_the_generated_one():
    from demo.columns import markdown

    text = (REPO_ROOT / "README.md").read_text()
    table = text[text.index("<!-- columns -->"):text.index("<!-- /columns -->")]
    assert table.removeprefix("<!-- columns -->").strip() == markdown()
