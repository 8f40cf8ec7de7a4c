"""Headless Chromium for the browser tests: Debian's build, driven by Playwright.

Playwright's own browser downloads are not used (``playwright install`` is
never run): the tests launch ``/usr/bin/chromium`` (or $CHROMIUM). Screenshots
go to $PYTEST_ARTIFACTS when set, else to the test's tmp_path.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        pytest.fail(
            f"no Chromium at {path}: install Debian's package (apt-get install chromium) "
            "or set CHROMIUM to a Chromium binary"
        )
    return path


@contextmanager
def chromium() -> Iterator:
    """A headless browser; the test fails (never skips) without one."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def artifact_path(tmp_path: Path, name: str) -> Path:
    folder = Path(os.environ.get("PYTEST_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name
