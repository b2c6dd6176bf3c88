"""The page's ci (词) mode in real Chromium: a tune chosen by typing part of its name, a ci written
to it, shown in its stanzas; the text has the tune's shape and rhymes by the independent checker."""

from __future__ import annotations

import pytest
from ci_rules import ci_problems
from conftest import corpus_file
from test_server_page import SCREENSHOT, launch_chromium, open_page, pytestmark  # noqa: F401  (the same skip)


@pytest.fixture(scope="module")
def chromium():
    with launch_chromium() as browser:
        yield browser


def generate_and_wait(page) -> None:
    page.click("#generate")
    page.wait_for_function("document.querySelector('#status').textContent.includes('characters in')",
                           timeout=60_000)


def test_page_writes_a_ci_in_its_stanzas(live, chromium):
    page = open_page(chromium, live, 1200, 900)
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.select_option("#model", "tiny-tang")
    page.select_option("#form", "ci")
    assert page.is_visible("#ci-search") and not page.is_visible("#acrostic")
    page.wait_for_function("document.querySelectorAll('#ci-tune option').length > 50")
    page.fill("#ci-search", "鸪")  # part of the name: 鹧鸪天 and 瑞鹧鸪 are left
    options = page.locator("#ci-tune option").all_inner_texts()
    assert options and all("鸪" in o for o in options) and any(o.startswith("鹧鸪天 · ") for o in options)
    assert "7/7/7,7/3,3/7/7,7" in next(o for o in options if o.startswith("鹧鸪天"))  # its shape's signature
    page.select_option("#ci-tune", "鹧鸪天")
    assert "上阕 28 / 下阕 27" in page.inner_text("#ci-tune-info")
    page.fill("#ci-title", "春晚")
    page.fill("#seed", "2")
    generate_and_wait(page)
    assert "finish: form_complete" in page.inner_text("#status")
    stanzas = page.locator("#output .stanza")
    assert stanzas.count() == 2
    assert [stanzas.nth(i).get_attribute("data-name") for i in range(2)] == ["上阕", "下阕"]
    upper = stanzas.nth(0).locator(".ci-line").all_inner_texts()
    lower = stanzas.nth(1).locator(".ci-line").all_inner_texts()
    assert [len(line) for line in upper] == [8, 8, 16] and [len(line) for line in lower] == [8, 8, 16]
    assert page.inner_text("#output .ci-heading") == "鹧鸪天\n春晚"
    assert ci_problems("\n".join(upper + lower), "鹧鸪天", corpus_file("songci")) == []
    if SCREENSHOT:
        page.screenshot(path=SCREENSHOT.replace(".png", "-ci.png"), full_page=True)

    page.fill("#ci-search", "浣西沙")  # no such tune: the server's 422 names the nearest
    assert page.locator("#ci-tune option").count() == 0
    page.click("#generate")
    page.wait_for_function("document.querySelector('#status').className === 'error'", timeout=30_000)
    assert "422" in page.inner_text("#status") and "浣溪沙" in page.inner_text("#status")
    page.select_option("#model", "tiny-shakespeare")  # no ，。 in its vocabulary: no tunes to offer
    page.wait_for_function("document.querySelector('#ci-tune-info').textContent.includes('writes no ci')")
    assert page.locator("#ci-tune option").count() == 0
    assert errors == []
    page.close()
