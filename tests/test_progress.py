"""Progress displays on a real Ray: plain lines off a terminal, a rich view on one, and
nothing at all when quiet.

A failure must be shown *while* the run goes on: a step waits for a marker file that the
test writes only when the display has named the failure, so the assertion is about order,
never about time.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest
from rich.console import Console

import raypipe
from raypipe import dsl
from raypipe.runtime.execution import Execution
from raypipe.runtime.progress import LiveProgress, PlainProgress
from tests.pipelines import add, fail

_SAFETY_S = 60.0  # a step waiting for a marker gives up after this (the test then fails)


@dsl.component
def wait_for(marker: str, seconds: float) -> bool:
    """True once ``marker`` exists; False if it did not appear within ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if os.path.exists(marker):
            return True
        time.sleep(0.05)
    return False


@dsl.pipeline(name="half-broken")
def half_broken(marker: str, seconds: float) -> bool:
    fail(message="kaput")
    return wait_for(marker=marker, seconds=seconds).output


@dsl.pipeline(name="sums")
def sums(a: int) -> int:
    return add(a=add(a=a, b=1).output, b=2).output


class _Watch(io.StringIO):
    """A stream that creates ``marker`` once ``text`` has been written to it."""

    def __init__(self, marker: Path, text: str) -> None:
        super().__init__()
        self.marker, self.text = marker, text

    def write(self, s: str) -> int:
        n = super().write(s)
        if self.text in self.getvalue() and not self.marker.exists():
            self.marker.write_text("seen")
        return n


def test_plain_lines_name_a_failure_as_it_happens(tmp_path: Path) -> None:
    marker = tmp_path / "seen"
    stream = _Watch(marker, "fail failed: ValueError: kaput")
    handle = raypipe.submit(
        half_broken, {"marker": str(marker), "seconds": _SAFETY_S}, fail_fast=False
    )
    result = handle.wait(progress=PlainProgress(stream=stream))
    out = stream.getvalue()
    # the waiting step saw the marker: the failure was printed while it was in flight
    assert result.tasks["wait-for"].state == "SUCCEEDED", out
    assert result.output is True, out
    assert result.status == "FAILED"
    assert "\x1b" not in out and "\r" not in out
    lines = out.splitlines()
    assert all(line.startswith(f"[raypipe] {handle.run_name}: ") for line in lines), out
    assert sum("fail failed: ValueError: kaput" in line for line in lines) == 1, out
    assert "in flight (submitted, not finished)" in out  # status line after the failure
    assert lines[-1].endswith("(1 succeeded, 1 failed)"), out
    assert lines[-1].split(": ", 1)[1].startswith("FAILED after ")


def test_run_prints_plain_lines_to_stderr_when_not_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("RAYPIPE_QUIET")
    result = raypipe.run(half_broken, {"marker": "/nonexistent/marker", "seconds": 0.0})
    captured = capsys.readouterr()
    assert "[raypipe]" not in captured.out  # stdout stays for the program's own output
    out = captured.err
    assert result.status == "FAILED"
    assert "\x1b" not in out and "\r" not in out
    assert "fail failed: ValueError: kaput" in out
    assert f"[raypipe] {result.run_name}: FAILED after " in out


def test_quiet_prints_nothing_and_takes_no_snapshot(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    snapshots: list[object] = []
    real = Execution.snapshot

    def counted(self: Execution, *args: int, **kwargs: int) -> object:
        snapshots.append(self)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Execution, "snapshot", counted)
    # RAYPIPE_QUIET=1 (set for every test) silences run()
    assert raypipe.run(sums, {"a": 1}).output == 4
    # so does quiet=True without it
    monkeypatch.delenv("RAYPIPE_QUIET")
    assert raypipe.run(sums, {"a": 1}, quiet=True).output == 4
    # and submit() shows nothing, nor does wait() by default
    assert raypipe.submit(sums, {"a": 1}).wait().output == 4
    captured = capfd.readouterr()
    assert "[raypipe]" not in captured.out + captured.err
    assert "in flight" not in captured.out + captured.err
    assert snapshots == []


def test_wait_progress_true_respects_raypipe_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    assert raypipe.submit(sums, {"a": 1}).wait(progress=True).output == 4
    captured = capsys.readouterr()
    assert "[raypipe]" not in captured.out + captured.err


def test_rich_view_shows_states_and_failures(tmp_path: Path) -> None:
    marker = tmp_path / "seen"
    # the view has shown the failure while the other step is in flight: let it finish
    stream = _Watch(marker, "kaput")
    console = Console(file=stream, force_terminal=True, width=100)
    handle = raypipe.submit(
        half_broken, {"marker": str(marker), "seconds": _SAFETY_S}, fail_fast=False
    )
    result = handle.wait(progress=LiveProgress(console=console))
    out = stream.getvalue()
    assert result.output is True, out
    assert "\x1b[" in out  # a live terminal view
    assert "in flight (submitted, not finished)" in out
    assert "fail failed: ValueError: kaput" in out
    assert "succeeded" in out and "failed" in out
    assert "FAILED" in out  # the final view names how the run ended
    assert "half-broken" in out and handle.run_name in out
