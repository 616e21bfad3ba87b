"""The HTML leaderboard in headless Chromium: loads cleanly, sorts on header clicks, escapes names."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_leaderboard_support import XSS, write_golden

from talkface.leaderboard.load import load_results
from talkface.leaderboard.published import load_published
from talkface.leaderboard.render import to_html
from talkface.leaderboard.table import build_leaderboard


@pytest.fixture(scope="module")
def page_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("html")
    board = build_leaderboard(load_results([write_golden(root / "results")]),
                              published=load_published("lrs2"), published_dataset="lrs2")
    path = root / "board.html"
    path.write_text(to_html(board), encoding="utf-8")
    return path


def _methods(page) -> list[str]:
    return page.eval_on_selector_all("#leaderboard tbody tr", "rows => rows.map(r => r.dataset.method)")


def _column(page, index: int) -> list[str]:
    return page.eval_on_selector_all(
        "#leaderboard tbody tr", f"rows => rows.map(r => r.cells[{index}].getAttribute('data-sort') || '')"
    )


def test_page_is_self_contained(page_file: Path) -> None:
    text = page_file.read_text()
    assert "http://" not in text.replace("https://www.paperswithcode.com", "")
    for tag in ("<link rel=\"stylesheet\"", "<script src", "<img", "@import", "url("):
        assert tag not in text
    assert "default-src 'none'" in text


def test_page_loads_without_errors_and_sorts(browser_page, page_file: Path) -> None:
    page = browser_page
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(page_file.as_uri())
    page.wait_for_load_state("load")
    before = _methods(page)
    assert before[:2] == ["ground-truth", "real data (reference clips)"]
    # LMD mouth is column 1: ascending on the first click, descending on the second
    page.click("#leaderboard thead th:nth-child(2) button")
    values = [float(v) for v in _column(page, 1) if v]
    assert values == sorted(values) and _methods(page) != before
    assert _methods(page)[:2] == ["ground-truth", "ours"]
    assert page.get_attribute("#leaderboard thead th:nth-child(2)", "aria-sort") == "ascending"
    page.click("#leaderboard thead th:nth-child(2) button")
    values = [float(v) for v in _column(page, 1) if v]
    assert values == sorted(values, reverse=True)
    assert _methods(page)[0] == XSS
    assert _column(page, 1)[-1] == ""  # the real-data row has no LMD: it stays last either way
    # the method column sorts by name
    page.click("#leaderboard thead th:nth-child(1) button")
    names = _methods(page)
    assert names == page.evaluate("ns => ns.slice().sort((a, b) => a.localeCompare(b))", names)
    assert page.get_attribute("#leaderboard thead th:nth-child(2)", "aria-sort") is None
    assert page.console_errors == []  # type: ignore[attr-defined]
    assert dialogs == []


def test_hostile_method_name_shows_as_text(browser_page, page_file: Path) -> None:
    page = browser_page
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(page_file.as_uri())
    page.wait_for_load_state("load")
    page.wait_for_timeout(200)
    assert page.locator("img").count() == 0
    cell = page.locator(f'#leaderboard tbody tr[data-method="{XSS}"] td').first
    assert cell.inner_text().strip() == XSS
    assert XSS in page.locator("body").inner_text()
    assert dialogs == [] and page.console_errors == []  # type: ignore[attr-defined]
