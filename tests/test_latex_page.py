"""The page typesets `form: latex` output in real Chromium: KaTeX from the package, no CDN.

The server offers the tiny Stacks model of ``conftest.py``; the page asks for a lemma, shows the
source as returned (``\\begin{lemma}`` first) and below it the typeset text: math through the
vendored KaTeX with the model's preamble macros, the lemma as a theorem.  Every request the page
makes goes to the test server.
"""

from __future__ import annotations

import pytest
from live_server import LiveServer
from test_server_page import ARGS, CHROMIUM, pytestmark  # noqa: F401  (the same skip when Chromium is missing)

# A prompt with math of the tiny model's vocabulary (a script, \mathcal, \in), for KaTeX to typeset.
PROMPT = "Let $\\mathcal{F}$ and $x_1 \\in X$. Then"


@pytest.fixture(scope="module")
def latex_server(tiny_stacks, tmp_path_factory):
    folder = tmp_path_factory.mktemp("latex-page")
    (folder / "tiny-stacks").symlink_to(tiny_stacks.resolve(), target_is_directory=True)
    server = LiveServer({"checkpoints": folder})
    yield server
    server.close()


def test_the_page_typesets_a_lemma(latex_server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e .[test]")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors, requested = [], []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("request", lambda request: requested.append(request.url))
        page.goto(latex_server.url + "/")
        page.wait_for_function("document.querySelectorAll('#model option').length === 1")
        page.select_option("#form", "latex")
        page.select_option("#environment", "lemma")
        page.fill("#prompt", PROMPT)
        page.fill("#max_new_chars", "120")
        page.fill("#seed", "3")
        page.click("#generate")
        page.wait_for_function("!document.querySelector('#rendered').hidden", timeout=90_000)
        source = page.inner_text("#output")
        assert source.startswith("\\begin{lemma}\n" + PROMPT) and source.endswith("\\end{lemma}")
        assert "finish: form_complete" in page.inner_text("#status")
        rendered = page.locator("#rendered")
        assert rendered.locator(".theorem strong").first.inner_text() == "Lemma."
        assert rendered.locator(".katex").count() >= 2  # the prompt's two formulas, at least
        assert rendered.locator(".katex .mathcal").count() >= 1  # \mathcal{F}, typeset
        assert any(url.endswith("/v1/models/tiny-stacks/latex") for url in requested)  # the preamble's macros
        assert "\\begin{lemma}" not in rendered.inner_text()
        page.wait_for_load_state("networkidle")
        assert requested and all(url.startswith(latex_server.url) for url in requested), requested
        assert any(url.endswith(".woff2") for url in requested)  # KaTeX's fonts, from /static/katex
        page.screenshot(path=str(tmp_path / "latex-page.png"), full_page=True)
        assert errors == []
        browser.close()
