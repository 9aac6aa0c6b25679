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


KEYS = ("greedy", "sampling", "top_k_top_p", "beam")


def outputs(page) -> list:
    return [page.locator(f"#{key}-text textarea") for key in KEYS]


def wait_done(page) -> list[str]:
    """Wait until every column has stopped; the texts."""
    # A column is done when its stats line says why it stopped (EOS or max tokens).
    page.wait_for_function(
        """keys => keys.every(k => /ended|max tokens/.test(document.getElementById(k + '-stats')?.innerText ?? ''))""",
        arg=list(KEYS), timeout=60_000)
    return [box.input_value() for box in outputs(page)]


def generate(page, url: str, prompt: str) -> list[str]:
    """Type a prompt, click Generate, wait until every column has stopped; the texts."""
    page.goto(url)
    page.get_by_label("prompt: the opening of an abstract").fill(prompt)
    page.get_by_role("button", name="Generate").click()
    return wait_done(page)


def test_desktop_columns_side_by_side(browser, server, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    texts = generate(page, server.url, "We present a distributed algorithm for")
    assert all(t.strip() for t in texts)
    boxes = [box.bounding_box() for box in outputs(page)]
    assert all(a["x"] < b["x"] for a, b in zip(boxes, boxes[1:], strict=False))  # side by side
    assert abs(boxes[0]["y"] - boxes[-1]["y"]) < 5
    assert page.get_by_text("parameters").count() >= 1  # the model panel
    page.locator("#sampling-shaded [role=button]").nth(2).click()  # open the candidate panel
    page.locator("#candidates table tbody tr").first.wait_for()
    page.screenshot(path=str(tmp_path / "desktop.png"), full_page=True)
    if SCREENSHOT:
        page.screenshot(path=SCREENSHOT, full_page=True)
    page.get_by_role("button", name="Clear").click()
    page.wait_for_function("() => !document.querySelector('#greedy-text textarea').value")
    assert [box.input_value() for box in outputs(page)] == [""] * len(KEYS)


def test_phone_columns_stack(browser, server, tmp_path):
    page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=1)
    texts = generate(page, server.url, "Graph neural networks are")
    assert all(t.strip() for t in texts)
    boxes = [box.bounding_box() for box in outputs(page)]
    assert all(a["y"] < b["y"] for a, b in zip(boxes, boxes[1:], strict=False))  # stacked
    assert all(b["x"] + b["width"] <= 390 + 1 for b in boxes)  # nothing runs off the screen
    page.screenshot(path=str(tmp_path / "phone.png"), full_page=True)


def candidate_rows(page) -> list[list[str]]:
    """The candidate panel's table, row by row (cells' text)."""
    rows = page.locator("#candidates table tbody tr")
    rows.first.wait_for()
    return [rows.nth(i).locator("th, td").all_inner_texts() for i in range(rows.count())]


def test_a_token_shows_its_candidates_by_click_and_by_keyboard(browser, server):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    generate(page, server.url, "Deep neural networks have achieved")
    assert page.locator("#beam-hypotheses table tbody tr").count() == 4  # the default num_beams
    page.locator("#greedy-shaded [role=button]").first.click()
    rows = candidate_rows(page)
    assert len(rows) == 5 and rows[0][0] == "1"
    caption = page.locator("#candidates caption").inner_text()
    assert "Greedy, piece 1" in caption and "ranks 1" in caption and "nats" in caption
    assert "(emitted)" in rows[0][1]  # greedy emits the likeliest token
    headers = page.locator("#candidates thead th").all_inner_texts()
    assert headers[2] == "raw probability" and "column" in headers[3]
    # The keyboard path: Tab reaches the tokens, Enter opens one.
    page.locator("#beam-shaded [role=button]").nth(1).focus()
    page.keyboard.press("Enter")
    page.wait_for_function("() => /Beam search, piece 2/.test(document.querySelector('#candidates caption')?.innerText ?? '')")
    assert "beam" in page.locator("#candidates thead th").all_inner_texts()[3]


def test_fork_reruns_every_column_from_the_new_prompt(browser, server, client):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    prompt = "Graph neural networks are a powerful tool for"
    before = generate(page, server.url, prompt)
    page.locator("#sampling-shaded [role=button]").nth(3).click()
    rows = candidate_rows(page)
    choice = page.locator("#fork-choice label").nth(1)  # the second-likeliest candidate
    choice.click()
    page.get_by_role("button", name="Continue with this token").click()
    page.locator("#breadcrumb label").nth(1).wait_for(timeout=60_000)
    texts = wait_done(page)
    forked = page.get_by_label("prompt: the opening of an abstract").input_value()
    shaded = page.locator("#sampling-shaded [role=button]")
    assert forked.startswith(prompt) and forked != prompt and len(rows) == 5
    assert texts != before
    # Every column ran again from the new prompt with the run's settings (the page's defaults).
    assert texts == list(client.predict(forked, 64, 0.8, 40, 0.9, 4, 1.0, 0, api_name="/generate_all"))
    assert shaded.count() >= 1
    # One click back: the first entry restores and reruns the first run.
    page.locator("#breadcrumb label").first.click()
    page.wait_for_function("p => document.querySelector('#prompt textarea')?.value === p", arg=prompt)
    page.wait_for_function(
        """texts => texts.every((t, i) => document.querySelector(`#${KEYS[i]}-text textarea`).value === t)"""
        .replace("KEYS[i]", "['" + "','".join(KEYS) + "'][i]"), arg=before, timeout=60_000)


def test_a_share_link_opens_the_same_run_in_a_fresh_browser(browser, server, client):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    prompt = "We study the problem of scheduling jobs"
    page.goto(server.url)
    page.get_by_label("prompt: the opening of an abstract").fill(prompt)
    page.get_by_label("seed (sampling columns)").fill("7")
    page.get_by_role("button", name="Generate").click()
    texts = wait_done(page)
    page.get_by_role("button", name="Share").click()
    box = "#share-link :is(textarea, input)"
    page.wait_for_function("box => document.querySelector(box).value.startsWith('http')", arg=box)
    link = page.locator(box).input_value()
    assert link.startswith(server.url) and "seed=7" in link
    fresh = browser.new_context(viewport={"width": 1400, "height": 1100})
    other = fresh.new_page()
    other.goto(link)
    other.wait_for_function("p => document.querySelector('#prompt textarea')?.value === p", arg=prompt)
    shared = wait_done(other)
    fresh.close()
    api = client.predict(prompt, 64, 0.8, 40, 0.9, 4, 1.0, 7, api_name="/generate_all")
    assert shared == texts == list(api)
