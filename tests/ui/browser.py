"""Headless Chromium (Debian's ``/usr/bin/chromium``, never a downloaded browser) driven by
Playwright's Python API, with every console error and page error collected."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("RAYPIPE_TEST_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(os.environ.get("RAYPIPE_UI_SCREENSHOTS", "test-output/ui"))


@dataclass
class Console:
    """Errors the page reported: console.error lines and uncaught exceptions."""

    errors: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)  # substrings of expected errors

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(a in e for a in self.allowed)]


def browser_or_fail() -> Iterator[object]:
    """A launched Chromium; fails (not skips) when it is missing: `make test` installs it."""
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(
            f"no Chromium at {CHROMIUM}: install Debian's chromium package (make test does, "
            "as root) or set RAYPIPE_TEST_CHROMIUM"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            yield browser
        finally:
            browser.close()


def shot(page: object, name: str) -> Path:
    """Saves a screenshot of the page under the test output folder; returns its path."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path))  # type: ignore[attr-defined]
    return path
