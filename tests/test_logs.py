"""Step logs on a real Ray: one file per attempt under the artifact root, the tail of a
failing step's log in its result, and ``raypipe logs`` to read them back."""

from __future__ import annotations

import io
import os
import signal
import sys
from pathlib import Path

import pytest

import raypipe
from raypipe import dsl
from raypipe.cli import main
from raypipe.runtime.artifacts import ArtifactStore
from raypipe.runtime.logs import AttemptLog, CapturedOutput
from tests.pipelines import add
from tests.test_artifacts_remote import S3Server, s3  # noqa: F401  (the S3 server fixture)

# -- components ------------------------------------------------------------------------


@dsl.component
def chatty(n: int) -> int:
    print(f"to stdout {n}")
    print(f"to stderr {n}", file=sys.stderr)
    return n


@dsl.component(retries=2)
def flaky(marker: str) -> str:
    """Fail on the first two calls (counted in ``marker``), succeed on the third."""
    count = int(Path(marker).read_text()) if os.path.exists(marker) else 0
    Path(marker).write_text(str(count + 1))
    print(f"attempt {count + 1} starting")
    if count < 2:
        raise RuntimeError(f"flaky failure {count + 1}")
    return "done"


@dsl.component
def noisy_failure(lines: int) -> int:
    for i in range(lines):
        print(f"line {i}")
    raise ValueError("gave up")


@dsl.component(retries=1)
def dies_after_printing(marker: str) -> str:
    """Print, then kill this worker on the first call (``marker`` says it happened)."""
    print("about to die" if not os.path.exists(marker) else "second life")
    if not os.path.exists(marker):
        Path(marker).write_text("died")
        os.kill(os.getpid(), signal.SIGKILL)
    return "recovered"


@dsl.component(timeout=60)
def always_dies() -> str:
    print("last words")
    os.kill(os.getpid(), signal.SIGKILL)
    return "unreachable"


@dsl.pipeline(name="chatty")
def chatty_pipeline(n: int = 7) -> int:
    return chatty(n=n).output


@dsl.pipeline(name="flaky")
def flaky_pipeline(marker: str) -> str:
    return flaky(marker=marker).set_retry(2, backoff_duration="0s").output


@dsl.pipeline(name="noisy")
def noisy_pipeline(lines: int = 80) -> int:
    return noisy_failure(lines=lines).output


@dsl.pipeline(name="silent")
def silent_pipeline() -> int:
    return add(a=1, b=2).output


@dsl.pipeline(name="crashy")
def crashy_pipeline(marker: str) -> str:
    return dies_after_printing(marker=marker).set_retry(1, backoff_duration="0s").output


@dsl.pipeline(name="doomed")
def doomed_pipeline() -> str:
    return always_dies().output


@dsl.pipeline(name="looped")
def looped_pipeline() -> None:
    with dsl.ParallelFor([1, 2]) as n:
        chatty(n=n)


def _task_dir(home: Path, pipeline: str, run_id: str, task: str) -> Path:
    return home / "artifacts" / pipeline / run_id / task


# -- files ------------------------------------------------------------------------------


def test_a_step_that_prints_to_stdout_and_stderr_leaves_both_in_its_attempt_log(
    raypipe_home: Path,
) -> None:
    result = raypipe.run(chatty_pipeline, {"n": 7})
    assert result.ok
    log = _task_dir(raypipe_home, "chatty", result.run_id, "chatty") / ".logs" / "attempt-1.log"
    assert log.read_text().splitlines() == ["to stdout 7", "to stderr 7"]


def test_each_retried_attempt_writes_its_own_log_file(raypipe_home: Path, tmp_path: Path) -> None:
    result = raypipe.run(flaky_pipeline, {"marker": str(tmp_path / "count")})
    assert result.ok
    logs = _task_dir(raypipe_home, "flaky", result.run_id, "flaky") / ".logs"
    assert sorted(p.name for p in logs.glob("*.log")) == [  # beside them: attempt markers
        "attempt-1.log",
        "attempt-2.log",
        "attempt-3.log",
    ]
    for number in (1, 2, 3):
        assert (logs / f"attempt-{number}.log").read_text() == f"attempt {number} starting\n"
    errors = [a.error for a in result.tasks["flaky"].attempts]
    assert errors[0] is not None and errors[0].log_tail == "attempt 1 starting"
    assert errors[2] is None


def test_a_step_that_prints_nothing_creates_no_log_file(raypipe_home: Path) -> None:
    result = raypipe.run(silent_pipeline)
    assert result.ok
    assert not (_task_dir(raypipe_home, "silent", result.run_id, "add") / ".logs").exists()


def test_loop_iterations_keep_their_logs_under_their_bracketed_task_names(
    raypipe_home: Path,
) -> None:
    result = raypipe.run(looped_pipeline)
    assert result.ok
    loop_tasks = sorted(name for name in result.tasks if name.endswith("/chatty"))
    assert len(loop_tasks) == 2 and all("[" in name for name in loop_tasks)
    for index, name in enumerate(loop_tasks):
        log = _task_dir(raypipe_home, "looped", result.run_id, name) / ".logs" / "attempt-1.log"
        assert log.read_text() == f"to stdout {index + 1}\nto stderr {index + 1}\n"


# -- the failed result --------------------------------------------------------------------


def test_a_failed_result_carries_the_last_fifty_lines_of_the_failing_steps_log() -> None:
    result = raypipe.run(noisy_pipeline, {"lines": 80})
    assert result.status == "FAILED"
    assert result.error is not None and result.error.log_tail is not None
    assert result.error.log_tail.splitlines() == [f"line {i}" for i in range(30, 80)]
    summary = result.summary()
    assert f"raypipe logs {result.run_id} noisy-failure" in summary
    assert "  line 79" in summary


def test_a_failed_step_that_printed_nothing_has_no_log_tail() -> None:
    result = raypipe.run(noisy_pipeline, {"lines": 0})
    assert result.error is not None and result.error.log_tail is None
    assert "last lines of its log" not in result.summary()


def test_an_attempt_whose_worker_died_carries_what_it_printed(tmp_path: Path) -> None:
    result = raypipe.run(crashy_pipeline, {"marker": str(tmp_path / "marker")})
    assert result.ok
    first, second = result.tasks["dies-after-printing"].attempts
    assert first.error is not None and first.error.type.endswith("StepCrashedError")
    assert first.error.log_tail == "about to die"
    assert second.error is None


def test_a_run_whose_last_attempt_died_reports_its_log_tail() -> None:
    result = raypipe.run(doomed_pipeline)
    assert result.status == "FAILED"
    assert result.error is not None and result.error.type.endswith("StepCrashedError")
    assert result.error.log_tail == "last words"


# -- raypipe logs -------------------------------------------------------------------------


def test_raypipe_logs_prints_every_attempt_of_a_run_under_a_header(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = raypipe.run(flaky_pipeline, {"marker": str(tmp_path / "count")})
    capsys.readouterr()
    assert main(["logs", result.run_id]) == 0
    assert capsys.readouterr().out == (
        "==> flaky (attempt 1) <==\nattempt 1 starting\n"
        "==> flaky (attempt 2) <==\nattempt 2 starting\n"
        "==> flaky (attempt 3) <==\nattempt 3 starting\n"
    )


def test_raypipe_logs_with_a_task_prints_that_task_and_a_loop_name_its_iterations(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = raypipe.run(looped_pipeline)
    first = sorted(name for name in result.tasks if name.endswith("/chatty"))[0]
    capsys.readouterr()
    assert main(["logs", result.run_id, first]) == 0
    assert capsys.readouterr().out == f"==> {first} (attempt 1) <==\nto stdout 1\nto stderr 1\n"
    loop = first.split("[")[0]
    assert main(["logs", result.run_id, loop]) == 0
    assert capsys.readouterr().out.count("==> ") == 2


def test_raypipe_logs_exits_2_naming_an_unknown_run(capsys: pytest.CaptureFixture[str]) -> None:
    raypipe.run(chatty_pipeline)
    assert main(["logs", "no-such-run"]) == 2
    assert "no run 'no-such-run'" in capsys.readouterr().err


def test_raypipe_logs_exits_2_naming_an_unknown_task(capsys: pytest.CaptureFixture[str]) -> None:
    result = raypipe.run(chatty_pipeline)
    assert main(["logs", result.run_id, "nope"]) == 2
    err = capsys.readouterr().err
    assert "no logs for task 'nope'" in err and "tasks with logs: chatty" in err


def test_raypipe_logs_reads_an_explicit_artifact_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "elsewhere"
    result = raypipe.run(chatty_pipeline, {"n": 3}, artifact_root=str(root))
    capsys.readouterr()
    assert main(["logs", result.run_id, "chatty"]) == 2  # not under the default root
    assert main(["logs", result.run_id, "chatty", "--artifact-root", str(root)]) == 0
    assert "to stdout 3" in capsys.readouterr().out


# -- echo and remote roots ----------------------------------------------------------------


def test_captured_lines_reach_the_original_stream_with_the_task_prefix(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    log = AttemptLog(ArtifactStore(str(tmp_path)), "p", "run1", "loop[0]/step", 1)
    try:
        with CapturedOutput("loop[0]/step", log):
            print("one\ntwo")
            sys.stdout.write("partial ")
            sys.stdout.write("line\n")
            print("oops", file=sys.stderr)
    finally:
        sys.stdout, sys.stderr = saved
    assert out.getvalue() == (
        "[loop[0]/step] one\n[loop[0]/step] two\n[loop[0]/step] partial line\n"
    )
    assert err.getvalue() == "[loop[0]/step] oops\n"
    written = tmp_path / "p" / "run1" / "loop[0]" / "step" / ".logs" / "attempt-1.log"
    assert written.read_text() == "one\ntwo\npartial line\noops\n"


def test_logs_on_an_s3_root_are_uploaded_and_printed_by_raypipe_logs(
    s3: S3Server,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = s3.root("logs-test")
    result = raypipe.run(chatty_pipeline, {"n": 5}, artifact_root=root)
    assert result.ok
    key = f"logs-test/chatty/{result.run_id}/chatty/.logs/attempt-1.log"
    assert s3.read(key) == b"to stdout 5\nto stderr 5\n"
    capsys.readouterr()
    assert main(["logs", result.run_id, "--artifact-root", root]) == 0
    assert capsys.readouterr().out == "==> chatty (attempt 1) <==\nto stdout 5\nto stderr 5\n"
