"""The page's paper mode in real Chromium: a whole paper from the tiny Stacks model through
``POST /v1/paper``, shown typeset (title, abstract, sections, theorems, KaTeX math), with its
source and, since the server has pdflatex, a link to the PDF it compiled.  And the route itself:
its validation answers name the field."""

from __future__ import annotations

import base64
import shutil

import pytest
from live_server import LiveServer
from test_server_page import ARGS, CHROMIUM, pytestmark  # noqa: F401  (the same skip when Chromium is missing)


@pytest.fixture(scope="module")
def paper_server(tiny_stacks, tmp_path_factory):
    folder = tmp_path_factory.mktemp("paper-page")
    (folder / "tiny-stacks").symlink_to(tiny_stacks.resolve(), target_is_directory=True)
    server = LiveServer({"checkpoints": folder})
    yield server
    server.close()


def test_the_page_writes_and_shows_a_whole_paper(paper_server, tmp_path):
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed: the page offers no PDF without it")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e .[test]")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(paper_server.url + "/")
        page.wait_for_function("document.querySelectorAll('#model option').length === 1")
        page.select_option("#form", "paper")
        assert page.is_visible("#paper-sections") and not page.is_visible("#environment")
        page.fill("#paper-title", "On tiny schemes")
        page.fill("#paper-sections", "2")
        page.fill("#max_new_chars", "700")
        page.fill("#seed", "2")
        page.click("#generate")
        page.wait_for_function("!document.querySelector('#rendered').hidden", timeout=180_000)
        source = page.inner_text("#output")
        assert "\\begin{document}" in source and "\\title{On tiny schemes}" in source and source.count("\\section{") == 2
        rendered = page.locator("#rendered")
        assert rendered.locator(".paper-title").inner_text() == "On tiny schemes"
        assert rendered.locator("h3").count() >= 2  # the two sections' titles
        assert rendered.locator(".theorem").count() >= 1 and rendered.locator(".katex").count() >= 1
        assert "\\section" not in rendered.inner_text() and "\\begin{" not in rendered.inner_text()
        status = page.inner_text("#status")
        assert "compiled by pdflatex" in status, status
        link = page.locator("#paper-pdf")
        assert link.is_visible() and "PDF (" in link.inner_text()
        with page.expect_download() as download:
            link.click()
        pdf = tmp_path / "paper.pdf"
        download.value.save_as(pdf)
        assert pdf.read_bytes().startswith(b"%PDF")
        page.screenshot(path=str(tmp_path / "paper-page.png"), full_page=True)
        assert errors == []
        browser.close()


def test_the_paper_route_answers_the_document_and_its_pdf(paper_server):
    answer = paper_server.post("/v1/paper", {"model": "tiny-stacks", "sections": 1, "max_chars": 400, "seed": 1})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    preamble = paper_server.get("/v1/models/tiny-stacks/latex").json()["preamble"]
    assert body["document"].startswith(preamble.rstrip()) and body["document"].rstrip().endswith("\\end{document}")
    assert "\\section{" in body["body"] and body["abstract"] and body["chars"] > 0
    if body["pdflatex"]:
        assert base64.b64decode(body["pdf"]).startswith(b"%PDF") and body["pages"] >= 1


@pytest.mark.parametrize("request_body,field", [
    ({"model": "tiny-stacks", "sections": 0}, "sections"),
    ({"model": "tiny-stacks", "max_chars": 10**7}, "max_chars"),
    ({"model": "tiny-stacks", "title": "a}b"}, "title"),
    ({"model": "tiny-stacks", "colour": "red"}, "colour"),
    ({"model": "nope"}, "model"),
])
def test_the_paper_route_names_what_is_wrong(paper_server, request_body, field):
    answer = paper_server.post("/v1/paper", request_body)
    assert answer.status_code in (404, 422) and answer.json()["error"]["field"] == field, answer.text
