"""The live progress display in a real Jupyter kernel (nbclient, ipykernel).

A notebook runs a pipeline with one step that fails and one that is still in flight when
it does, and starts its own local Ray. The display must be one output updated in place
(``display_data``, then ``update_display_data`` with the same display id) naming the
steps by state and the time since submission, plus an output naming the failure, shown
while the other step is still in flight, all without ANSI escapes in the plain text.

The notebook keeps only the last state of an output updated in place, so the client
here also records every message the run cell produces.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbformat import NotebookNode

pytestmark = pytest.mark.timeout(120)

_KERNEL = "raypipe-test-python"
_ESCAPES = re.compile(r"[\x1b\r]")  # ANSI sequences start with ESC; \r redraws a line
_ERROR = "kaput in a notebook"

_DEFINE = """\
import json, os, sys, time

import raypipe
from raypipe import dsl

MARKER = {marker!r}


@dsl.component
def explode(marker: str) -> int:
    open(marker, "w").close()  # nap's clock starts now: it is in flight when this fails
    raise ValueError({error!r})


@dsl.component
def nap(marker: str, seconds: float) -> float:
    end = time.monotonic() + 60
    while not os.path.exists(marker) and time.monotonic() < end:
        time.sleep(0.05)
    time.sleep(seconds)
    return seconds


@dsl.pipeline(name="nb-progress")
def nb_progress(marker: str, seconds: float) -> float:
    explode(marker=marker)
    return nap(marker=marker, seconds=seconds).output


print(sys.executable)
"""
_RUN = 'result = raypipe.run(nb_progress, {"marker": MARKER, "seconds": 1.5}, fail_fast=False)'
_REPORT = """\
print(json.dumps({
    "run_name": result.run_name,
    "status": str(result.status),
    "states": {name: str(task.state) for name, task in result.tasks.items()},
}))
"""
_SHUTDOWN = "import ray\nray.shutdown()"


class _RecordingClient(NotebookClient):
    """An nbclient that also keeps every message the kernel sends about a cell."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.messages: list[tuple[int, dict[str, Any]]] = []

    def process_message(
        self, msg: dict[str, Any], cell: NotebookNode, cell_index: int
    ) -> NotebookNode | None:
        self.messages.append((cell_index, msg))
        return super().process_message(msg, cell, cell_index)


def _kernel_manager(tmp_path: Path) -> KernelManager:
    """A kernel running this virtualenv's Python, its spec and files under ``tmp_path``."""
    spec = tmp_path / "jupyter" / "kernels" / _KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec.joinpath("kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": _KERNEL, "language": "python"})
    )
    return KernelManager(
        kernel_name=_KERNEL,
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(spec.parent)]),
        connection_file=str(tmp_path / "jupyter" / "connection.json"),
    )


def _kernel_env(tmp_path: Path, raypipe_home: Path) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("RAYPIPE_QUIET", "RAY_ADDRESS", "RAYPIPE_ARTIFACT_ROOT"):
        env.pop(name, None)  # a display, and a Ray of the kernel's own
    env["RAYPIPE_HOME"] = str(raypipe_home)
    env["RAY_AUTH_MODE"] = "disabled"
    for name, sub in [
        ("IPYTHONDIR", "ipython"),  # IPython's history and profile stay out of $HOME
        ("JUPYTER_CONFIG_DIR", "jupyter/config"),
        ("JUPYTER_DATA_DIR", "jupyter/data"),
        ("JUPYTER_RUNTIME_DIR", "jupyter/runtime"),
    ]:
        env[name] = str(tmp_path / sub)
    return env


def _shut_down(client: NotebookClient, km: KernelManager) -> None:
    """Stop the kernel's Ray (the last cell does, unless an earlier one failed), then it."""
    try:
        if client.kc is not None and km.is_alive():
            client.kc.execute_interactive(_SHUTDOWN, timeout=30)
    finally:
        if client.kc is not None:
            client.kc.stop_channels()
        if km.has_kernel:
            km.shutdown_kernel(now=False)


def _text(output: dict[str, Any]) -> str:
    """The plain text of a stream or display output (or message content)."""
    if "text" in output:
        return str(output["text"])
    return str(output.get("data", {}).get("text/plain", ""))


def _display_id(content: dict[str, Any]) -> str | None:
    transient = content.get("transient") or {}
    return transient.get("display_id")


def test_notebook_shows_a_live_view_and_failures(tmp_path: Path, raypipe_home: Path) -> None:
    marker = tmp_path / "explode-started"
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(_DEFINE.format(marker=str(marker), error=_ERROR)),
        nbformat.v4.new_code_cell(_RUN),
        nbformat.v4.new_code_cell(_REPORT),
        nbformat.v4.new_code_cell(_SHUTDOWN),
    ]
    km = _kernel_manager(tmp_path)
    client = _RecordingClient(nb, km=km, timeout=90, kernel_name=_KERNEL)
    try:
        client.execute(env=_kernel_env(tmp_path, raypipe_home), cwd=str(tmp_path))
    finally:
        _shut_down(client, km)

    define, run, report, _ = nb.cells
    assert [_text(o) for o in define.outputs] == [f"{sys.executable}\n"]  # this venv's kernel
    ended = json.loads(_text(report.outputs[0]))
    assert ended["status"] == "FAILED"
    assert ended["states"] == {"explode": "FAILED", "nap": "SUCCEEDED"}
    title = f"nb-progress · {ended['run_name']} — "

    # What the saved notebook shows: the final view, then the failure, as display data
    everything = json.dumps(run.outputs, ensure_ascii=False, indent=1)
    displays = [o for o in run.outputs if o["output_type"] == "display_data"]
    views = [o for o in displays if _text(o).startswith(title)]
    failures = [o for o in displays if "explode failed" in _text(o)]
    assert len(views) == 1, everything  # one view, updated in place
    assert len(failures) == 1, everything
    assert displays.index(views[0]) < displays.index(failures[0]), everything
    final = _text(views[0])
    assert final.startswith(f"{title}FAILED · "), everything
    assert re.search(r"^\s*1\s+succeeded\s*$", final, re.MULTILINE), final
    assert re.search(r"^\s*1\s+failed\s*$", final, re.MULTILINE), final
    assert "in flight" not in final, final
    assert _text(failures[0]) == f"✗ explode failed: ValueError: {_ERROR}\n"
    assert 'style="color' in views[0]["data"]["text/html"]  # the colours are in the HTML
    assert 'style="color' in failures[0]["data"]["text/html"]
    for output in displays:
        assert not _ESCAPES.search(_text(output)), everything
        assert "\x1b" not in output["data"].get("text/html", ""), everything
    for output in run.outputs:  # no terminal rendering or plain lines as a fallback
        if output["output_type"] == "stream":
            assert title not in _text(output) and "[raypipe]" not in _text(output), everything
            assert 'ipywidgets" for Jupyter' not in _text(output), everything

    # What the kernel sent while the run went on: the view refreshed in place, showing
    # the step in flight with its time since submission, and the failure as it happened
    run_index = nb.cells.index(run)
    sent = [m for i, m in client.messages if i == run_index]
    shown = [(m["msg_type"], m["content"]) for m in sent]
    view_ids = [_display_id(c) for t, c in shown if t == "display_data" and _display_id(c)]
    assert len(view_ids) == 1, shown  # one view; the failure line is an output of its own
    view_id = view_ids[0]
    updates = [
        (n, _text(c))
        for n, (t, c) in enumerate(shown)
        if t == "update_display_data" and _display_id(c) == view_id
    ]
    assert len(updates) >= 2, shown
    assert updates[-1][1] == final
    for _, text in updates:
        assert not _ESCAPES.search(text), text
    failed_at = next(n for n, (t, c) in enumerate(shown) if "explode failed" in _text(c))
    running_after_failure = [
        text
        for n, text in updates
        if n > failed_at
        and text.startswith(f"{title}running · ")
        and re.search(r"^\s*\d+\.\d s\s+in flight: nap\s*$", text, re.MULTILINE)
        and re.search(r"^\s*1\s+failed\s*$", text, re.MULTILINE)
        and re.search(r"^\s*1\s+in flight \(submitted, not finished\)", text, re.MULTILINE)
    ]
    assert running_after_failure, updates
