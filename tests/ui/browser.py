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


# Every piece of text on the page with its colour, the colour behind it (backgrounds
# composited up the ancestors; an SVG label's is its node's box, over the graph's
# background) and the contrast ratio WCAG 2 defines; text that fails AA is returned:
# below 4.5:1, or 3:1 for large text (24 px, or 18.66 px bold). Disabled controls and
# hidden text are exempt, as WCAG says.
_CONTRAST = """() => {
  const parse = (text) => {  // rgb(r, g, b) or rgba(r, g, b, a), as computed styles give
    if (!text || !text.startsWith('rgb')) return null;
    const [r, g, b, a] = text.match(/[\\d.]+/g).map(Number);
    return [r, g, b, a === undefined ? 1 : a];
  };
  const over = (top, bottom) => {  // top composited over an opaque bottom
    const a = top[3];
    return [0, 1, 2].map((i) => top[i] * a + bottom[i] * (1 - a)).concat(1);
  };
  const lum = (c) => {
    const [r, g, b] = c.slice(0, 3).map((v) => {
      const s = v / 255;
      return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const ratio = (a, b) => {
    const [hi, lo] = [lum(a), lum(b)].sort((x, y) => y - x);
    return (hi + 0.05) / (lo + 0.05);
  };
  const layers = (start) => {  // background colours from start up to the root
    const found = [];
    for (let e = start; e && e.nodeType === 1; e = e.parentElement) {
      const style = getComputedStyle(e);
      if (e instanceof SVGElement && e.matches('g.node')) {
        const rect = e.querySelector(':scope > rect');
        const fill = rect && parse(getComputedStyle(rect).fill);
        if (fill) found.push(fill);
      } else if (!(e instanceof SVGElement)) {
        const bg = parse(style.backgroundColor);
        if (bg && bg[3] > 0) found.push(bg);
      }
    }
    return found;
  };
  const behind = (start) => {
    let color = [255, 255, 255, 1];
    for (const layer of layers(start).reverse()) color = layer[3] >= 1 ? layer : over(layer, color);
    return color;
  };
  const failing = [];
  const seen = new Set();
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let t = walker.nextNode(); t; t = walker.nextNode()) {
    const e = t.parentElement;
    if (!e || !t.textContent.trim() || seen.has(e)) continue;
    seen.add(e);
    const exempt = '[disabled], [aria-hidden="true"], dialog:not([open]), .sr-only, title, option';
    if (e.closest(exempt)) continue;
    if (!e.getClientRects().length) continue;
    const style = getComputedStyle(e);
    if (style.visibility === 'hidden' || Number(style.opacity) === 0) continue;
    const svgText = e instanceof SVGElement;
    let fg = parse(svgText ? style.fill : style.color);
    if (!fg) continue;
    const bg = behind(svgText ? e.parentElement : e);
    if (fg[3] < 1) fg = over(fg, bg);
    const size = parseFloat(style.fontSize);
    const bold = Number(style.fontWeight) >= 700;
    const needed = size >= 24 || (size >= 18.66 && bold) ? 3 : 4.5;
    const found = ratio(fg, bg);
    if (found < needed) {
      failing.push(`${found.toFixed(2)}:1 < ${needed}:1: "${t.textContent.trim().slice(0, 40)}" `
        + `(${e.tagName.toLowerCase()}.${String(e.className.baseVal ?? e.className)}, `
        + `rgb(${fg.slice(0, 3).map(Math.round)}) on rgb(${bg.slice(0, 3).map(Math.round)}))`);
    }
  }
  return failing;
}"""


def contrast_problems(page: object) -> list[str]:
    """Text of the page whose contrast with what is behind it fails WCAG 2 AA."""
    found: list[str] = page.evaluate(_CONTRAST)  # type: ignore[attr-defined]
    return found
