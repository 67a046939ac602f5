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


# Marks every control, link and graph node (data-audit), lists those without an accessible
# name, and returns how many there are; then each Tab press reports what has the focus and
# whether it shows it (an outline, or a graph node's thicker border).
_MARK = """() => {
  const shown = (e) => e.getClientRects().length > 0 || e.closest('.skip');
  const found = [...document.querySelectorAll(
    'a[href], button:not([disabled]), input:not([type=hidden]), select, textarea, [tabindex]'
  )].filter((e) => e.tabIndex >= 0 && !e.closest('dialog:not([open])') && shown(e));
  const unnamed = [];
  found.forEach((e, i) => {
    e.dataset.audit = String(i);
    const labelled = e.getAttribute('aria-labelledby');
    const name = (e.getAttribute('aria-label') || '').trim()
      || (labelled && document.getElementById(labelled)?.textContent.trim())
      || (e.labels && [...e.labels].map((l) => l.textContent.trim()).join(''))
      || (/^(A|BUTTON)$/.test(e.tagName) && e.textContent.trim())
      || (e.getAttribute('title') || '').trim();
    if (!name) unnamed.push(e.outerHTML.slice(0, 120));
  });
  return { count: found.length, unnamed };
}"""

_FOCUSED = """() => {
  const e = document.activeElement;
  if (!e || e === document.body || !e.dataset || e.dataset.audit === undefined) return null;
  let visible;
  if (e.matches('.node')) {
    visible = parseFloat(getComputedStyle(e.querySelector('rect')).strokeWidth) >= 3;
  } else {
    const style = getComputedStyle(e);
    visible = style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0;
  }
  return { id: e.dataset.audit, visible, html: e.outerHTML.slice(0, 120) };
}"""


def audit_keyboard(page: object, max_tabs: int = 120) -> list[str]:
    """Problems of the page for keyboard and screen-reader users: controls, links and
    graph nodes without an accessible name, ones Tab never reaches, and ones that do not
    show that they have the focus. Presses Tab until the focus comes round again."""
    marked = page.evaluate(_MARK)  # type: ignore[attr-defined]
    problems = [f"no accessible name: {html}" for html in marked["unnamed"]]
    page.evaluate("document.activeElement && document.activeElement.blur()")  # type: ignore[attr-defined]
    reached: dict[str, bool] = {}
    first = None
    for _ in range(max_tabs):
        page.keyboard.press("Tab")  # type: ignore[attr-defined]
        focused = page.evaluate(_FOCUSED)  # type: ignore[attr-defined]
        if focused is None:
            continue
        if focused["id"] == first:
            break
        first = first or focused["id"]
        reached[focused["id"]] = focused["visible"]
        if not focused["visible"]:
            problems.append(f"focus not visible: {focused['html']}")
    missing = marked["count"] - len(reached)
    if missing:
        unreached = page.evaluate(  # type: ignore[attr-defined]
            "(seen) => [...document.querySelectorAll('[data-audit]')]"
            ".filter((e) => !seen.includes(e.dataset.audit)).map((e) => e.outerHTML.slice(0, 120))",
            list(reached),
        )
        problems.extend(f"not reached with Tab: {html}" for html in unreached)
    return problems
