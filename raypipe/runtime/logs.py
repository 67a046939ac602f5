"""Step logs: what a step prints, kept per attempt under the artifact root and read back.

While a step's function runs, ``sys.stdout`` and ``sys.stderr`` are replaced by tees
that write to the attempt's log file, ``{root}/{pipeline}/{run_id}/{task}/.logs/attempt-N.log``
(created on the first write, so a silent step costs no file), and to the original stream
with each line prefixed by ``[task]``, which Ray forwards to the driver. On a remote root
the log is written to a local file and uploaded when the attempt ends. The same folder
holds the attempt markers of :mod:`raypipe.runtime.markers` (``attempt-N.json``: when an
attempt that ran for a while or printed started, and how it ended).

Example:
    >>> log = AttemptLog(ArtifactStore("/tmp/arts"), "p", "run1", "train", 1)
    >>> with CapturedOutput("train", log):
    ...     print("epoch 1")          # /tmp/arts/p/run1/train/.logs/attempt-1.log  # doctest: +SKIP
    >>> find_logs("/tmp/arts", "run1")  # doctest: +SKIP
    {'train': [(1, '/tmp/arts/p/run1/train/.logs/attempt-1.log')]}
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import types
from typing import IO, Any

from pyarrow import fs as pafs

from raypipe.dsl.artifacts import Artifact
from raypipe.runtime.artifacts import ArtifactStore
from raypipe.runtime.markers import MARKER_PATTERN

__all__ = [
    "LOG_DIR",
    "TAIL_LINES",
    "AttemptLog",
    "CapturedOutput",
    "find_attempt_files",
    "find_logs",
    "read_log",
    "redact",
    "stored_tail",
    "tail_of",
]

LOG_DIR = ".logs"  # under each task's folder; no output or task name starts with a dot
TAIL_LINES = 50  # lines of a failed attempt's log carried in its error
_TAIL_BYTES = 64 * 1024  # read at most this much from the end of a log for its tail
_ATTEMPT_FILE = re.compile(r"attempt-(\d+)\.log")
_MARKER_FILE = re.compile(MARKER_PATTERN)


def log_name(number: int) -> str:
    """The file name of attempt ``number``'s log, inside the task's ``logs`` folder."""
    return f"attempt-{number}.log"


class AttemptLog:
    """The log file of one attempt of one step; opened on the first write only."""

    __slots__ = ("_closed", "_file", "_local", "_store", "_uri", "tail")

    def __init__(
        self, store: ArtifactStore, pipeline: str, run_id: str, task: str, number: int
    ) -> None:
        self._store = store
        self._uri = store.output_uri(pipeline, run_id, task, f"{LOG_DIR}/{log_name(number)}")
        self._file: IO[str] | None = None
        self._local: str | None = None
        self._closed = False
        self.tail: str | None = None  # the last lines, set by close(failed=True)

    @property
    def written(self) -> bool:
        return self._local is not None

    def write(self, text: str) -> None:
        file = self._file
        if file is None:
            if self._closed:  # a stream the step kept (a logging handler) writes after it
                return
            file = self._open()
        file.write(text)

    def _open(self) -> IO[str]:
        if self._store.is_local:
            local = self._uri
            os.makedirs(os.path.dirname(local), exist_ok=True)
        else:
            handle, local = tempfile.mkstemp(prefix="raypipe-log-", suffix=".log")
            os.close(handle)
        # Line-buffered: a worker killed mid-step (timeout watchdog, OOM) leaves its log.
        self._file = open(local, "a", buffering=1, encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
        self._local = local
        return self._file

    def close(self, *, failed: bool = False) -> None:
        """Close the file; keep its tail if the attempt failed; upload it on a remote root."""
        self._closed = True
        if self._file is None or self._local is None:
            return
        self._file.close()
        self._file = None
        if failed:
            self.tail = tail_of(self._local)
        if not self._store.is_local:
            try:
                self._store.commit_output(Artifact(name="log", uri=self._uri, path=self._local))
            finally:
                os.unlink(self._local)


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every occurrence of each secret value replaced by ``***``.

    Example:
        >>> redact("token=s3cr3t; again s3cr3t", ("s3cr3t",))
        'token=***; again ***'
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class _Tee:
    """A text stream that writes to the attempt's log and, each line prefixed, to ``stream``
    (both with the step's secret values replaced by ``***``)."""

    def __init__(
        self, stream: Any, log: AttemptLog, prefix: str, secrets: tuple[str, ...] = ()
    ) -> None:
        self._stream, self._log, self._prefix = stream, log, prefix
        self._secrets = secrets
        self._line_start = True

    def write(self, text: str) -> int:
        if not text:
            return 0
        length = len(text)
        if self._secrets:
            text = redact(text, self._secrets)
        self._log.write(text)
        if self._stream is not None:
            shown = text.replace("\n", "\n" + self._prefix)
            if text.endswith("\n"):
                shown = shown[: -len(self._prefix)]
            if self._line_start:
                shown = self._prefix + shown
            self._stream.write(shown)
        self._line_start = text.endswith("\n")
        return length

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._stream is not None:
            self._stream.flush()

    def __getattr__(self, name: str) -> Any:  # encoding, isatty, fileno, buffer...
        return getattr(self._stream, name)


class CapturedOutput:
    """Tee ``sys.stdout`` and ``sys.stderr`` into ``log`` while the block runs; restore
    them and close the log at its end (a class, not a generator: this is on every step)."""

    __slots__ = ("_log", "_prefix", "_redact", "_saved")

    def __init__(self, task: str, log: AttemptLog, redact: tuple[str, ...] = ()) -> None:
        self._log, self._prefix, self._redact = log, f"[{task}] ", redact
        self._saved: tuple[Any, Any] = (None, None)

    def __enter__(self) -> AttemptLog:
        self._saved = sys.stdout, sys.stderr
        sys.stdout = _Tee(self._saved[0], self._log, self._prefix, self._redact)
        sys.stderr = _Tee(self._saved[1], self._log, self._prefix, self._redact)
        return self._log

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        sys.stdout, sys.stderr = self._saved
        self._log.close(failed=exc_type is not None)


def tail_of(path: str, lines: int = TAIL_LINES) -> str | None:
    """The last ``lines`` lines of a local file, or None if it is missing or empty."""
    try:
        with open(path, "rb") as file:
            file.seek(0, os.SEEK_END)
            size = file.tell()
            file.seek(max(0, size - _TAIL_BYTES))
            data = file.read()
    except OSError:
        return None
    text = data.decode("utf-8", errors="backslashreplace")
    kept = text.splitlines()[-lines:]
    return "\n".join(kept) if kept else None


def stored_tail(
    store: ArtifactStore, pipeline: str, run_id: str, task: str, number: int
) -> str | None:
    """The tail of an earlier attempt's log, for attempts known only from the ledger (their
    worker died). Local roots only: a dead worker never uploaded its log to a remote one."""
    if not store.is_local:
        return None
    return tail_of(store.output_uri(pipeline, run_id, task, f"{LOG_DIR}/{log_name(number)}"))


# -- reading logs back (the ``raypipe logs`` command) --------------------------------------


def _filesystem(root: str) -> tuple[Any, str]:
    location = root if "://" in root else os.path.abspath(root)
    filesystem, path = pafs.FileSystem.from_uri(location)
    return filesystem, str(path).rstrip("/")


def find_run(root: str, run_id: str) -> list[str]:
    """The folders ``{root}/*/{run_id}`` (one per pipeline that has such a run; usually one)."""
    filesystem, base = _filesystem(root)
    try:
        pipelines = filesystem.get_file_info(pafs.FileSelector(base, allow_not_found=True))
    except OSError:
        return []
    candidates = [f"{p.path}/{run_id}" for p in pipelines if p.type == pafs.FileType.Directory]
    if not candidates:
        return []
    found = filesystem.get_file_info(candidates)
    return [info.path for info in found if info.type == pafs.FileType.Directory]


def find_logs(root: str, run_id: str) -> dict[str, list[tuple[int, str]]] | None:
    """Every task of run ``run_id`` that wrote a log: ``{task: [(attempt, path), ...]}``, in
    task order, attempts in order; None if the artifact root has no such run."""
    found = find_attempt_files(root, run_id)
    return None if found is None else found[0]


def find_attempt_files(
    root: str, run_id: str
) -> tuple[dict[str, list[tuple[int, str]]], dict[str, list[tuple[int, str]]]] | None:
    """The logs and the attempt markers (:mod:`raypipe.runtime.markers`) of run ``run_id``,
    from one listing: ``(logs, markers)``, each ``{task: [(attempt, path), ...]}`` in task
    order, attempts in order; None if the artifact root has no such run."""
    runs = find_run(root, run_id)
    if not runs:
        return None
    filesystem, _ = _filesystem(root)
    logs: dict[str, list[tuple[int, str]]] = {}
    markers: dict[str, list[tuple[int, str]]] = {}
    for run_dir in runs:
        selector = pafs.FileSelector(run_dir, recursive=True)
        for info in filesystem.get_file_info(selector):
            if info.type != pafs.FileType.File:
                continue
            relative = info.path[len(run_dir) + 1 :]
            folder, _, name = relative.rpartition("/")
            task, _, logs_dir = folder.rpartition("/")
            if logs_dir != LOG_DIR or not task:
                continue
            match = _ATTEMPT_FILE.fullmatch(name)
            kind = logs
            if match is None:
                match = _MARKER_FILE.fullmatch(name)
                kind = markers
            if match is not None:
                kind.setdefault(task, []).append((int(match.group(1)), info.path))
    return (
        {task: sorted(logs[task]) for task in sorted(logs)},
        {task: sorted(markers[task]) for task in sorted(markers)},
    )


def read_log(root: str, path: str) -> str:
    """The text of a log file found by :func:`find_logs`."""
    filesystem, _ = _filesystem(root)
    with filesystem.open_input_stream(path) as stream:
        data: bytes = stream.read()
    return data.decode("utf-8", errors="backslashreplace")


def print_logs(root: str, run_id: str, task: str | None, out: Any = None) -> int:
    """Print a run's logs (or one task's, nested tasks included) with a header per attempt;
    return 0, or 2 with a message on stderr if the run or the task is unknown."""
    out = out if out is not None else sys.stdout
    found = find_logs(root, run_id)
    if found is None:
        print(f"error: no run {run_id!r} under {root}", file=sys.stderr)
        return 2
    if task is not None:
        chosen = {
            name: attempts
            for name, attempts in found.items()
            if name == task or name.startswith((task + "/", task + "["))
        }
        if not chosen:
            known = ", ".join(found) or "none"
            print(
                f"error: run {run_id} has no logs for task {task!r} (tasks with logs: {known})",
                file=sys.stderr,
            )
            return 2
        found = chosen
    if not found:
        print(f"run {run_id}: no step printed anything", file=sys.stderr)
    for name, attempts in found.items():
        for number, path in attempts:
            print(f"==> {name} (attempt {number}) <==", file=out)
            text = read_log(root, path)
            out.write(text if text.endswith("\n") or not text else text + "\n")
    return 0
