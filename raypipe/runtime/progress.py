"""Progress displays for a run being waited on: a live ``rich`` view, or plain lines.

The waiting call (:meth:`RunHandle.wait` with ``progress=``, or ``raypipe.run``) polls
:meth:`Execution.snapshot` — state the collector thread keeps as reports arrive — and
feeds it to a :class:`Progress`. Nothing here runs, and ``rich`` is not imported, when
the run is quiet.

raypipe knows when a step was submitted and when it finished, not when it started, so
unfinished steps are shown as **in flight** (waiting for inputs or a worker, or running)
with the time since their submission.

Example:
    >>> handle = raypipe.submit(training, {"epochs": 3})         # doctest: +SKIP
    >>> handle.wait(progress=True)                               # doctest: +SKIP
"""

from __future__ import annotations

import io
import os
import re
import sys
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, Protocol

from raypipe.runtime.execution import Failure, Snapshot
from raypipe.runtime.result import RunResult

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live

__all__ = [
    "LiveProgress",
    "PlainProgress",
    "Progress",
    "auto_progress",
    "quiet_from_env",
]

LIVE_INTERVAL_S = 0.25  # at most 4 refreshes a second
PLAIN_INTERVAL_S = 10.0  # a status line at most this often when not on a terminal

_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|[\x00-\x08\x0b-\x1f\x7f]")
_ORDER = ["SUCCEEDED", "FAILED", "CANCELED", "SKIPPED", "UPSTREAM_FAILED"]
_HTML = (  # how rich itself shows output in a notebook
    '<pre style="white-space:pre;overflow-x:auto;line-height:normal;'
    "font-family:Menlo,'DejaVu Sans Mono',consolas,'Courier New',monospace\">{code}</pre>"
)


class Progress(Protocol):
    """What a waiting call drives: ``update`` every ``interval`` seconds, then ``close``."""

    interval: float

    def start(self, run_name: str, pipeline: str) -> None: ...

    def update(self, snapshot: Snapshot) -> None: ...

    def close(self, snapshot: Snapshot, result: RunResult | None) -> None:
        """The run finished with ``result``, or the wait ended without one (None)."""
        ...


def quiet_from_env() -> bool:
    """Whether ``RAYPIPE_QUIET`` asks for no progress display."""
    return os.environ.get("RAYPIPE_QUIET", "").strip().lower() not in ("", "0", "false", "no")


def _in_jupyter() -> bool:
    shell = sys.modules.get("IPython")
    get_ipython = getattr(shell, "get_ipython", None)
    ip = get_ipython() if get_ipython is not None else None
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def auto_progress() -> Progress | None:
    """The display for this process: None under ``RAYPIPE_QUIET=1``, a live view on a
    terminal or in a notebook, plain lines otherwise (CI logs)."""
    if quiet_from_env():
        return None
    # Progress is diagnostics: it goes to stderr, so `raypipe run --json | jq` stays clean.
    isatty = getattr(sys.stderr, "isatty", None)
    if (isatty is not None and isatty()) or _in_jupyter():
        return LiveProgress()
    return PlainProgress()


def _clean(text: str, limit: int = 200) -> str:
    """One line, no control characters, at most ``limit`` characters."""
    lines = text.strip().splitlines()
    first = _CONTROL.sub("", lines[0] if lines else "")
    return first if len(first) <= limit else first[: limit - 1] + "…"


def _short_type(type_name: str) -> str:
    return type_name.rpartition(".")[2] or type_name


def _failure_text(failure: Failure) -> str:
    kind = _short_type(failure.type) or "error"
    message = _clean(failure.message)
    return f"{failure.task} failed: {kind}: {message}" if message else f"{failure.task} failed"


def _counts(snapshot: Snapshot) -> list[tuple[str, int]]:
    states = sorted(snapshot.finished, key=lambda s: (_ORDER.index(s) if s in _ORDER else 99, s))
    return [(s, snapshot.finished[s]) for s in states if snapshot.finished[s]]


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _summary(snapshot: Snapshot) -> str:
    parts = [f"{snapshot.in_flight} in flight (submitted, not finished)"]
    parts += [f"{n} {state.lower()}" for state, n in _counts(snapshot)]
    return ", ".join(parts)


class PlainProgress:
    """Plain lines without control characters, for logs that are not a terminal.

    A failure is printed as soon as it is seen; a status line when the failure count
    changes and at most every :data:`PLAIN_INTERVAL_S` seconds otherwise; one line at
    the end.
    """

    interval = 0.25

    def __init__(self, stream: IO[str] | None = None, every: float = PLAIN_INTERVAL_S) -> None:
        self._stream, self._every = stream, every
        self._name = ""
        self._last = 0.0

    def _print(self, line: str) -> None:
        stream = self._stream if self._stream is not None else sys.stderr
        stream.write(f"[raypipe] {self._name}: {line}\n")
        stream.flush()

    def start(self, run_name: str, pipeline: str) -> None:
        self._name = run_name
        self._last = time.monotonic()

    def update(self, snapshot: Snapshot) -> None:
        for failure in snapshot.failures:
            self._print(_failure_text(failure))
        now = time.monotonic()
        if snapshot.failures or now - self._last >= self._every:
            self._last = now
            line = f"{_duration(snapshot.elapsed)}: {_summary(snapshot)}"
            if snapshot.oldest:
                name, age = snapshot.oldest[0]
                line += f"; oldest in flight: {name} ({_duration(age)})"
            self._print(line)

    def close(self, snapshot: Snapshot, result: RunResult | None) -> None:
        for failure in snapshot.failures:
            self._print(_failure_text(failure))
        if result is not None:
            counts: dict[str, int] = {}
            for task in result.tasks.values():
                counts[task.state.value] = counts.get(task.state.value, 0) + 1
            states = sorted(counts, key=lambda s: (_ORDER.index(s) if s in _ORDER else 99, s))
            detail = ", ".join(f"{counts[s]} {s.lower()}" for s in states)
            self._print(f"{result.status.value} after {_duration(snapshot.elapsed)} ({detail})")


class LiveProgress:
    """A ``rich.live.Live`` view: steps by state, the oldest steps in flight with the time
    since their submission, and each failure printed above the view as it is seen.

    In a Jupyter notebook the view is one output updated in place (see
    :class:`_NotebookLive`), and each failure an output of its own below it.
    """

    interval = LIVE_INTERVAL_S

    def __init__(self, console: Console | None = None) -> None:
        self._console = console
        self._live: Any = None
        self._title = ""

    def start(self, run_name: str, pipeline: str) -> None:
        from rich.console import Console
        from rich.live import Live

        console = self._console if self._console is not None else Console(stderr=True)
        self._title = f"{pipeline} · {run_name}"
        if console.is_jupyter:
            self._live = _NotebookLive(console.width)
            return
        self._live = Live(
            console=console,
            auto_refresh=False,  # refreshed by update(), at most 4 times a second
            transient=False,
            redirect_stdout=True,
            redirect_stderr=True,
        )
        self._live.start()

    def _render(self, snapshot: Snapshot, status: str | None = None) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        title = Text(f"{self._title} — {status or 'running'} · {_duration(snapshot.elapsed)}")
        table = Table(
            show_header=False,
            box=None,
            padding=(0, 1),
        )
        table.add_column(justify="right")
        table.add_column()
        if status is None:
            table.add_row(str(snapshot.in_flight), "in flight (submitted, not finished)")
        style = {"SUCCEEDED": "green", "FAILED": "red", "CANCELED": "yellow"}
        for state, n in _counts(snapshot):
            table.add_row(str(n), f"[{style.get(state, 'dim')}]{state.lower()}[/]")
        if status is None:
            for name, age in snapshot.oldest:
                table.add_row(_duration(age), Text.assemble(("in flight: ", "dim"), name))
        return Group(title, table)

    def update(self, snapshot: Snapshot) -> None:
        live = self._live
        if live is None:
            return
        _print_failures(live, snapshot.failures)
        live.update(self._render(snapshot), refresh=True)

    def close(self, snapshot: Snapshot, result: RunResult | None) -> None:
        live = self._live
        if live is None:
            return
        try:
            _print_failures(live, snapshot.failures)
            if result is not None:
                finished: dict[str, int] = {}
                for task in result.tasks.values():
                    finished[task.state.value] = finished.get(task.state.value, 0) + 1
                final = Snapshot(
                    elapsed=snapshot.elapsed,
                    finished=finished,
                    in_flight=0,
                    oldest=[],
                    failures=[],
                    failure_count=snapshot.failure_count,
                )
                live.update(self._render(final, result.status.value), refresh=True)
            else:
                live.update(self._render(snapshot), refresh=True)
        finally:
            live.stop()
            self._live = None


class _NotebookLive:
    """What ``rich.live.Live`` does on a terminal, done for a Jupyter notebook.

    There ``Live`` needs ipywidgets (without them it shows a warning and no view) and its
    ``text/plain`` carries ANSI escapes. This shows the view as one ``display_data`` output
    that each update replaces (an IPython display handle: ``update_display_data``), and
    each printed line as an output of its own; both as HTML with the colours and as plain
    text without control characters.
    """

    def __init__(self, width: int) -> None:
        self._width = width
        self._handle: Any = None

    def _bundle(self, renderable: RenderableType) -> dict[str, str]:
        from rich.console import Console

        console = Console(
            file=io.StringIO(),
            record=True,
            width=self._width,
            color_system="truecolor",
            force_terminal=True,
            force_jupyter=False,  # rendered here, not displayed by rich
        )
        console.print(renderable, highlight=False)
        return {
            "text/plain": console.export_text(clear=False),
            "text/html": console.export_html(inline_styles=True, code_format=_HTML),
        }

    def print(self, renderable: RenderableType) -> None:
        if self._handle is None:  # outputs only append: the view first, lines below it
            self.update("")
        _display(self._bundle(renderable))

    def update(self, renderable: RenderableType, *, refresh: bool = True) -> None:
        if self._handle is None:
            self._handle = _display(self._bundle(renderable), display_id=True)
        else:
            self._handle.update(self._bundle(renderable), raw=True)

    def stop(self) -> None:
        self._handle = None


def _display(bundle: dict[str, str], **kwargs: Any) -> Any:
    """``IPython.display.display`` of a MIME bundle (its handle with ``display_id=True``)."""
    from IPython.display import display

    show: Callable[..., Any] = display  # untyped in IPython
    return show(bundle, raw=True, **kwargs)


def _print_failures(live: Live | _NotebookLive, failures: list[Failure]) -> None:
    from rich.text import Text

    for failure in failures:
        line = Text.assemble(("✗ ", "red"), _failure_text(failure))
        if isinstance(live, _NotebookLive):
            live.print(line)
        else:
            live.console.print(line, highlight=False)
