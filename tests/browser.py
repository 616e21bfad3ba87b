"""Headless Chromium for page tests (Debian's ``chromium``, driven by Playwright).

Playwright's own browser download is never used: the page is opened in the system Chromium that
``make test`` installs with apt-get. Without Chromium or Playwright the browser tests skip locally and
fail under ``CI=true``, so a green CI always means the pages were really loaded and clicked.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from needs import missing

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def chromium_executable() -> Path | None:
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


def _missing(message: str) -> None:
    missing(f"{message} (`make test` installs it with apt-get)")


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[object]:
    """A fresh Playwright ``Page`` in headless system Chromium; console errors are collected in
    ``page.console_errors`` (a list of strings) so a test can assert there are none."""
    exe = chromium_executable()
    if exe is None:
        _missing("chromium not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright not installed (pip install -e '.[test]')")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(exe), headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        context = browser.new_context(accept_downloads=True)
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.console_errors = errors  # type: ignore[attr-defined]
        try:
            yield page
        finally:
            context.close()
            browser.close()
