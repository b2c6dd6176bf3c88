"""The web page in headless Chromium: it loads, lists the models, streams text for a prompt.

Needs Debian's ``chromium`` (``apt-get install -y chromium``) and the ``playwright`` package;
skipped with the reason when either is missing (CI installs both).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

import pytest
from server_fixtures import MODELS

CHROMIUM = os.environ.get("TEXTGEN_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOT = os.environ.get("TEXTGEN_SCREENSHOT")  # where to keep a screenshot of the page, to look at

CHROMIUM_MISSING = not Path(CHROMIUM).is_file() and not shutil.which(CHROMIUM)

pytestmark = [
    pytest.mark.skipif(CHROMIUM_MISSING, reason=f"no Chromium at {CHROMIUM}: apt-get install -y chromium"),
]


@contextlib.contextmanager
def launch_chromium():
    """Headless Chromium through Playwright, for tests in other files."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e .[test]")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e .[test]")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


def open_page(browser, live, width: int = 1280, height: int = 720):
    """The page of ``live`` in a new tab, once it has listed both models."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(live.url + "/")
    page.wait_for_function("document.querySelectorAll('#model option').length === 2")
    return page


def test_page_streams_text_for_a_prompt(live, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(live.url + "/")
    page.wait_for_function("document.querySelectorAll('#model option').length === 2")
    assert page.title() == "textgen"
    page.select_option("#model", "tiny-shakespeare")
    page.fill("#prompt", "ROMEO:\n")
    page.fill("#max_new_chars", "120")
    page.fill("#temperature", "0.5")
    page.click("#generate")
    page.wait_for_function("document.querySelector('#status').textContent.includes('characters in')",
                           timeout=60_000)
    text = page.inner_text("#output")
    assert text.startswith("ROMEO:\n") and len(text) >= len("ROMEO:\n") + 100
    assert "finish: length" in page.inner_text("#status")
    page.screenshot(path=SCREENSHOT or str(tmp_path / "page.png"), full_page=True)
    assert errors == []
    page.close()


def test_page_shows_an_error_and_stops_a_stream(live, browser):
    page = open_page(browser, live)
    page.select_option("#model", "tiny-tang")
    page.fill("#prompt", "春" * 600)  # over the prompt limit of the test server: 413
    page.click("#generate")
    page.wait_for_function("document.querySelector('#status').classList.contains('error')")
    assert page.inner_text("#status").startswith("413")
    page.select_option("#model", MODELS[0])  # Shakespeare: a long stream that no poem's end cuts short
    page.fill("#prompt", "ROMEO:")
    page.fill("#seed", "1")
    page.fill("#max_new_chars", "20000")
    page.click("#generate")
    page.wait_for_function("document.querySelector('#status').textContent.startsWith('Generating… ')")
    page.click("#stop")
    page.wait_for_function("document.querySelector('#status').textContent.startsWith('Stopped')")
    page.close()


def test_page_writes_a_poem_in_a_form(live, browser, tmp_path):
    page = open_page(browser, live, 1200, 800)
    page.select_option("#model", "tiny-tang")
    page.select_option("#form", "jueju-7")
    page.fill("#title", "春望")
    page.fill("#acrostic", "春夏秋冬")
    page.fill("#seed", "1")
    page.click("#generate")
    page.wait_for_function("document.querySelector('#status').textContent.includes('characters in')",
                           timeout=60_000)
    assert "finish: form_complete" in page.inner_text("#status")
    lines = page.inner_text("#output").split("\n")
    assert lines[0] == "春望" and [line[0] + line[8] for line in lines[1:]] == ["春夏", "秋冬"]
    if SCREENSHOT:
        page.screenshot(path=SCREENSHOT.replace(".png", "-poem.png"), full_page=True)
    page.close()


def test_page_returns_the_best_of_several_drafts(live, browser):
    page = open_page(browser, live)
    page.select_option("#model", "tiny-tang")
    page.select_option("#form", "jueju-5")
    page.fill("#seed", "2")
    page.fill("#best_of", "4")
    page.click("#generate")
    page.wait_for_function("document.querySelector('#status').textContent.includes('characters in')",
                           timeout=60_000)
    status = page.inner_text("#status")
    assert "best of 4 drafts" in status and "finish: form_complete" in status
    native = live.post("/v1/generate", {"model": "tiny-tang", "form": {"kind": "jueju", "chars_per_line": 5},
                                        "seed": 2, "best_of": 4}).json()
    assert page.inner_text("#output") == native["samples"][0]["text"]  # the page shows the server's best draft


def test_page_writes_a_regulated_poem_with_keywords(live, browser):
    from poem_rules import poem_problems

    page = open_page(browser, live, 1200, 900)
    page.select_option("#model", "tiny-tang")
    page.select_option("#form", "lushi-7")
    page.fill("#title", "秋夜")
    page.check("#rhyme")
    page.select_option("#tones", "any")
    page.check("#no_repeat")
    page.fill("#keywords", "月 江")
    page.fill("#seed", "2")
    page.click("#generate")
    page.wait_for_function("document.querySelector('#status').textContent.includes('characters in')",
                           timeout=60_000)
    assert "finish: form_complete" in page.inner_text("#status")
    title, _, poem = page.inner_text("#output").partition("\n")
    form = {"kind": "lushi", "chars_per_line": 7, "rhyme": True, "tones": True, "no_repeat": True,
            "keywords": ["月", "江"]}
    assert title == "秋夜" and poem_problems(poem, form) == [], poem
    if SCREENSHOT:
        page.screenshot(path=SCREENSHOT.replace(".png", "-rules.png"), full_page=True)
    page.close()


def test_the_page_starts_on_the_best_shipped_model_and_says_what_to_do(contract_exports, browser, tmp_path):
    """A fresh ``quickstart`` sorts first, but the page starts on the best shipped model of the first kind."""
    from live_server import LiveServer

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    english, verse = sorted(p for p in contract_exports.iterdir() if p.name.startswith("untrained"))
    for name, source, corpus, metrics in (
            ("aaa-quickstart", english, "shakespeare", {"val_bpc": 1.0}),  # trained here: sorts first
            ("verse-big", verse, "tang", {"val_bpc": 4.0, "shipped": True}),
            ("verse-best", verse, "tang", {"val_bpc": 3.0, "shipped": True}),
            ("zz-english", english, "zz-prose", {"val_bpc": 2.0, "shipped": True})):
        (folder / name).mkdir()
        for item in source.iterdir():
            if item.name not in ("metrics.json", "config.json"):
                (folder / name / item.name).symlink_to(item.resolve())
        config = json.loads((source / "config.json").read_text(encoding="utf-8"))
        (folder / name / "config.json").write_text(json.dumps({**config, "name": name, "corpus": corpus}),
                                                   encoding="utf-8")
        (folder / name / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    server = LiveServer({"checkpoints": folder})
    try:
        page = browser.new_page()
        page.goto(server.url + "/")
        page.wait_for_function("document.querySelectorAll('#model option').length === 4")
        assert page.input_value("#model") == "verse-best"  # the first shipped corpus (tang), lowest bits/char
        hint = page.evaluate("getComputedStyle(document.querySelector('#output'), '::before').content")
        assert "press Generate" in hint
        page.close()
    finally:
        server.close()


def test_page_revises_a_verse(live, browser, tmp_path):
    """Clicking a verse of a finished poem shows candidates; choosing one replaces the verse."""
    from poem_rules import poem_problems

    page = open_page(browser, live, 1200, 900)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.select_option("#model", "tiny-tang")
    page.select_option("#form", "jueju-5")
    page.wait_for_function("document.querySelector('#rhyme').checked")  # the kind's default, from the server
    page.fill("#title", "春望")
    page.check("#no_repeat")
    page.fill("#seed", "3")
    page.fill("#temperature", "1")
    page.click("#generate")
    page.wait_for_function("document.querySelectorAll('#output .verse').length === 4", timeout=60_000)
    title, _, before = page.inner_text("#output").partition("\n")
    form = {"kind": "jueju", "chars_per_line": 5, "rhyme": True, "tones": False, "no_repeat": True}
    assert title == "春望" and poem_problems(before, form) == [], before
    old = page.inner_text("#output .verse[data-verse='2']")
    page.click("#output .verse[data-verse='2']")
    page.wait_for_function("document.querySelectorAll('#revise-panel button.candidate').length > 0",
                           timeout=60_000)
    chosen = page.get_attribute("#revise-panel button.candidate", "data-verse")
    page.click("#revise-panel button.candidate")
    page.wait_for_function("document.querySelector('#status').textContent === 'Verse 2 replaced.'")
    title, _, after = page.inner_text("#output").partition("\n")
    assert page.inner_text("#output .verse[data-verse='2']") == chosen != old
    assert after == before.replace(old, chosen, 1) and poem_problems(after, form) == [], after
    if SCREENSHOT:
        page.screenshot(path=SCREENSHOT.replace(".png", "-revise.png"), full_page=True)
    assert errors == []
    page.close()
