"""A real browser: Debian's Chromium, headless, driven by Playwright (never downloaded)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
# Set APP_SCREENSHOT=docs/screenshot.png to refresh the README's screenshot from this test.
SCREENSHOT = os.environ.get("APP_SCREENSHOT")

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def browser():
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian package `chromium`; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


KEYS = ("greedy", "sampling", "top_k_top_p")


def outputs(page) -> list:
    return [page.locator(f"#{key}-text textarea") for key in KEYS]


def generate(page, url: str, prompt: str) -> list[str]:
    """Type a prompt, click Generate, wait until every column has stopped; the three texts."""
    page.goto(url)
    page.get_by_label("prompt: the opening of an abstract").fill(prompt)
    page.get_by_role("button", name="Generate").click()
    # A column is done when its stats line says why it stopped (EOS or max tokens).
    page.wait_for_function(
        """keys => keys.every(k => /ended|max tokens/.test(document.getElementById(k + '-stats')?.innerText ?? ''))""",
        arg=list(KEYS), timeout=60_000)
    return [box.input_value() for box in outputs(page)]


def test_desktop_three_columns_side_by_side(browser, server, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    texts = generate(page, server.url, "We present a distributed algorithm for")
    assert all(t.strip() for t in texts)
    boxes = [box.bounding_box() for box in outputs(page)]
    assert boxes[0]["x"] < boxes[1]["x"] < boxes[2]["x"]  # columns side by side
    assert abs(boxes[0]["y"] - boxes[2]["y"]) < 5
    assert page.get_by_text("parameters").count() >= 1  # the model panel
    page.screenshot(path=str(tmp_path / "desktop.png"), full_page=True)
    if SCREENSHOT:
        page.screenshot(path=SCREENSHOT, full_page=True)
    page.get_by_role("button", name="Clear").click()
    page.wait_for_function("() => !document.querySelector('#greedy-text textarea').value")
    assert [box.input_value() for box in outputs(page)] == ["", "", ""]


def test_phone_columns_stack(browser, server, tmp_path):
    page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=1)
    texts = generate(page, server.url, "Graph neural networks are")
    assert all(t.strip() for t in texts)
    boxes = [box.bounding_box() for box in outputs(page)]
    assert boxes[0]["y"] < boxes[1]["y"] < boxes[2]["y"]  # one column under the other
    assert all(b["x"] + b["width"] <= 390 + 1 for b in boxes)  # nothing runs off the screen
    page.screenshot(path=str(tmp_path / "phone.png"), full_page=True)
