"""Execution semantics on a real Ray: timeouts, crashed workers, infeasible resources, run
handles and cancel, fail-fast.

Steps that must be "running" or "started" tell the test so through marker files (their
pid, or an empty file), never through sleeps. The only timing assertions are the ones the
issue states: a cancel takes effect within 2 s.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import raypipe
from raypipe import dsl
from raypipe.runtime.deadline import Deadline
from raypipe.runtime.feasibility import ResourceRequest, find_problem
from raypipe.runtime.ledger import kill_grace
from tests.pipelines import add, echo, fail

# -- components ------------------------------------------------------------------------


@dsl.component
def sleepy(seconds: float, marker: str) -> int:
    """Write this worker's pid to ``marker``, then sleep."""
    Path(marker).write_text(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


@dsl.component(timeout=1)
def sleeps_past_timeout(seconds: float) -> int:
    time.sleep(seconds)
    return 0


@dsl.component(timeout=1)
def slow_first(marker: str, seconds: float) -> int:
    """Sleep ``seconds`` on the first call (counted in ``marker``), return the call count."""
    count = int(Path(marker).read_text()) if os.path.exists(marker) else 0
    Path(marker).write_text(str(count + 1))
    if count == 0:
        time.sleep(seconds)
    return count + 1


@dsl.component(timeout=1)
def deaf(seconds: float) -> str:
    """Sleep with SIGALRM blocked: like C code that never lets a signal handler run."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(seconds)
    return "woke up"


@dsl.component(timeout=1)
def deaf_first(marker: str) -> str:
    """Like ``deaf`` on the first call (the marker file says whether it was called)."""
    if not os.path.exists(marker):
        Path(marker).write_text("called")
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        time.sleep(60)
    return "second try"


@dsl.component(timeout=1)
def swallows_timeout(seconds: float) -> str:
    """Catch every exception, the timeout error included, and return normally."""
    try:
        time.sleep(seconds)
    except Exception:
        return "caught it"
    return "slept"


@dsl.component
def dies_first(marker: str) -> str:
    """Kill its own worker on the first call (the marker file says whether it was called)."""
    if not os.path.exists(marker):
        Path(marker).write_text("died")
        os.kill(os.getpid(), signal.SIGKILL)
    return "recovered"


@dsl.component
def always_dies() -> str:
    os.kill(os.getpid(), signal.SIGKILL)
    return "unreachable"


@dsl.component
def raises_then_dies_then_succeeds(marker: str) -> int:
    """Call 1 raises, call 2 kills its worker, call 3 returns the call count."""
    count = int(Path(marker).read_text()) if os.path.exists(marker) else 0
    Path(marker).write_text(str(count + 1))
    if count == 0:
        raise RuntimeError("first call raises")
    if count == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return count + 1


@dsl.component
def wait_for_file(path: str, then_sleep: float, started: str = "") -> str:
    """Say it ``started`` (a file), wait until ``path`` exists, then sleep a little and finish."""
    if started:
        Path(started).write_text("")
    while not os.path.exists(path):
        time.sleep(0.02)
    time.sleep(then_sleep)
    return "done"


@dsl.component
def wait_then_fail(path: str, started: str) -> int:
    """Say it started, wait until ``path`` exists (at most a minute), then raise."""
    Path(started).write_text("")
    for _ in range(3000):
        if os.path.exists(path):
            break
        time.sleep(0.02)
    raise RuntimeError("failed after the other step")


@dsl.component(resources={"tpu-pod": 1})
def needs_tpu() -> None:
    pass


@dsl.component
def touch_and_fail(path: str, once_exists: str) -> int:
    """Fail once ``once_exists`` exists (at most a minute on), leaving the file ``path``."""
    for _ in range(3000):
        if os.path.exists(once_exists):
            break
        time.sleep(0.02)
    Path(path).write_text("failed")
    raise ValueError("fails on purpose")


# -- helpers ---------------------------------------------------------------------------


def _eventually(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    """Wait until ``condition()`` holds; a generous limit only guards against hanging."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# -- timeouts --------------------------------------------------------------------------


def test_step_over_its_timeout_fails_with_an_error_naming_step_and_limit() -> None:
    @dsl.pipeline(name="timeouts")
    def timeouts() -> int:
        return sleeps_past_timeout(seconds=60).output

    result = raypipe.run(timeouts)
    assert result.status == "FAILED"
    error = result.error
    assert error is not None and error.task == "sleeps-past-timeout"
    assert error.type.endswith("StepTimeoutError")
    assert error.message.startswith("timeouts.sleeps-past-timeout: timed out after 1 s")
    assert "time.sleep(seconds)" in error.traceback  # where the step was interrupted
    assert result.duration < 30  # stopped, not slept out


def test_timed_out_attempt_counts_as_an_attempt_and_is_retried(tmp_path: Path) -> None:
    @dsl.pipeline(name="retried-timeout")
    def retried(marker: str) -> int:
        return slow_first(marker=marker, seconds=60).set_retry(1).output

    result = raypipe.run(retried, {"marker": str(tmp_path / "count")})
    assert result.ok and result.output == 2
    first, second = result.tasks["slow-first"].attempts
    assert first.error is not None and first.error.type.endswith("StepTimeoutError")
    assert second.error is None


def test_step_that_swallows_the_timeout_error_still_fails_with_it() -> None:
    @dsl.pipeline(name="swallower")
    def swallower() -> str:
        return swallows_timeout(seconds=60).output

    result = raypipe.run(swallower)
    assert result.status == "FAILED" and result.error is not None
    assert result.error.type.endswith("StepTimeoutError")


def test_step_deaf_to_the_timeout_signal_is_killed_and_recorded_as_a_timeout() -> None:
    @dsl.pipeline(name="deaf")
    def deaf_pipeline() -> str:
        return deaf(seconds=60).output

    result = raypipe.run(deaf_pipeline)
    assert result.status == "FAILED"
    task = result.tasks["deaf"]
    assert task.error is not None and task.error.type.endswith("StepTimeoutError")
    assert "its worker was killed after" in task.error.message
    assert "in deaf" in task.error.traceback  # the watchdog's dump shows where it was stuck
    assert len(task.attempts) == 1
    assert result.duration < 30


def test_killed_timed_out_attempt_is_retried_and_recorded_as_a_timeout(tmp_path: Path) -> None:
    @dsl.pipeline(name="deaf-once")
    def deaf_once(marker: str) -> str:
        return deaf_first(marker=marker).set_retry(1).output

    result = raypipe.run(deaf_once, {"marker": str(tmp_path / "called")})
    assert result.ok and result.output == "second try"
    killed, second = result.tasks["deaf-first"].attempts
    assert killed.error is not None and killed.error.type.endswith("StepTimeoutError")
    assert "its worker was killed" in killed.error.message
    assert "in deaf_first" in killed.error.traceback
    assert second.error is None


def test_deadline_clears_its_alarm_and_watchdog_and_restores_what_was_there() -> None:
    before_handler = signal.getsignal(signal.SIGALRM)
    outer = signal.setitimer(signal.ITIMER_REAL, 100)  # an alarm set by someone else
    try:
        with Deadline(pipeline="p", task="t", timeout=0.2, attempt=1, dump=None):
            pass
        with pytest.raises(raypipe.StepTimeoutError, match=r"p\.t: timed out after 0\.2 s"):
            with Deadline(pipeline="p", task="t", timeout=0.2, attempt=1, dump=None):
                time.sleep(5)
        with pytest.raises(ZeroDivisionError):
            with Deadline(pipeline="p", task="t", timeout=0.2, attempt=1, dump=None):
                1 / 0  # noqa: B018
        assert signal.getsignal(signal.SIGALRM) == before_handler
        assert 90 < signal.getitimer(signal.ITIMER_REAL)[0] <= 100
        # Were the watchdog still armed, it would kill this very process now.
        time.sleep(0.2 + kill_grace(0.2) + 0.3)
    finally:
        signal.setitimer(signal.ITIMER_REAL, *outer)


# -- crashed workers -------------------------------------------------------------------


def test_worker_killed_mid_step_is_retried_and_the_crash_is_an_attempt(tmp_path: Path) -> None:
    @dsl.pipeline(name="crashy")
    def crashy(marker: str) -> str:
        return dies_first(marker=marker).set_retry(1).output

    result = raypipe.run(crashy, {"marker": str(tmp_path / "died")})
    assert result.ok and result.output == "recovered"
    crashed, recovered = result.tasks["dies-first"].attempts
    assert (crashed.number, recovered.number) == (1, 2)
    assert crashed.error is not None and crashed.error.type.endswith("StepCrashedError")
    assert "crashy.dies-first: the worker died during attempt 1" in crashed.error.message
    assert crashed.start_time <= crashed.end_time <= recovered.start_time
    assert recovered.error is None


def test_raised_and_crashed_attempts_share_one_retry_budget(tmp_path: Path) -> None:
    @dsl.pipeline(name="mixed")
    def mixed(marker: str) -> int:
        return raises_then_dies_then_succeeds(marker=marker).set_retry(2).output

    result = raypipe.run(mixed, {"marker": str(tmp_path / "count")})
    assert result.ok and result.output == 3
    attempts = result.tasks["raises-then-dies-then-succeeds"].attempts
    assert [a.number for a in attempts] == [1, 2, 3]
    assert attempts[0].error is not None and attempts[0].error.message == "first call raises"
    assert attempts[1].error is not None and attempts[1].error.type.endswith("StepCrashedError")
    assert attempts[2].error is None


def test_worker_dying_on_every_attempt_fails_the_step_with_each_crash_recorded() -> None:
    @dsl.pipeline(name="doomed")
    def doomed() -> str:
        return always_dies().set_retry(1).output

    result = raypipe.run(doomed)
    assert result.status == "FAILED"
    task = result.tasks["always-dies"]
    assert [a.number for a in task.attempts] == [1, 2]
    assert task.attempts[0].end_time <= task.attempts[1].start_time
    assert all(
        a.error is not None and a.error.type.endswith("StepCrashedError") for a in task.attempts
    )
    assert result.error is not None and "WorkerCrashedError" in result.error.message


def test_worker_dying_without_retries_fails_with_a_crash_error() -> None:
    @dsl.pipeline(name="doomed-once")
    def doomed() -> str:
        return always_dies().output

    result = raypipe.run(doomed)
    assert result.status == "FAILED" and result.error is not None
    assert result.error.type.endswith("StepCrashedError")


# -- infeasible resources --------------------------------------------------------------


def test_step_needing_more_cpus_than_any_node_fails_before_anything_runs(tmp_path: Path) -> None:
    log = tmp_path / "ran.txt"

    @dsl.pipeline(name="addition")
    def addition(path: str) -> None:
        echo(text="fits")
        add(a=1, b=2).set_cpu_limit("64").set_display_name("train")
        wait_for_file(path=path, then_sleep=0)

    with pytest.raises(raypipe.InfeasibleResourcesError) as e:
        raypipe.run(addition, {"path": str(log)})
    message = str(e.value)
    assert message.startswith("addition.add.num_cpus: needs 64 CPUs; the largest node has 2")
    assert "RAYPIPE_SKIP_FEASIBILITY=1" in message and "check_resources=False" in message
    assert (e.value.pipeline, e.value.task, e.value.field) == ("addition", "add", "num_cpus")
    assert not log.exists()


def test_every_infeasible_step_and_resource_is_named_at_once() -> None:
    @dsl.pipeline(name="greedy")
    def greedy() -> None:
        echo(text="gpu").set_accelerator_limit(1)
        echo(text="memory").set_memory_limit("100Ti")
        needs_tpu()
        echo(text="a100").set_accelerator_type("A100")

    with pytest.raises(raypipe.InfeasibleResourcesError) as e:
        raypipe.run(greedy)
    message = str(e.value)
    assert "greedy.echo.num_gpus: needs 1 GPU; no node has a GPU" in message
    assert "greedy.echo-2.memory: needs 102400.0 GiB of memory; the largest node has" in message
    assert "greedy.needs-tpu.resources.tpu-pod: needs 1 of custom resource 'tpu-pod'" in message
    assert "greedy.echo-3.accelerator: needs accelerator type 'A100'" in message
    assert message.count("\n  - ") == 4


def test_requests_that_fit_only_on_different_nodes_are_infeasible_together() -> None:
    nodes = [{"CPU": 8.0, "GPU": 0.0}, {"CPU": 1.0, "GPU": 1.0}]
    request = ResourceRequest(cpus=4, gpus=1, memory=0, custom=(("tpu", 1.0),), accelerator=None)
    assert find_problem(request, nodes) == (
        "resources.tpu",
        "needs 1 of custom resource 'tpu'; no node has it",
    )
    request = ResourceRequest(cpus=4, gpus=1, memory=0, custom=(), accelerator=None)
    problem = find_problem(request, nodes)
    assert problem is not None and problem[0] is None
    assert "no node has all of it" in problem[1]
    assert find_problem(ResourceRequest(1, 1, 0, (), None), nodes) is None


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_feasibility_check_can_be_skipped_for_autoscaling_clusters(
    how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    @dsl.pipeline(name="autoscaled")
    def autoscaled() -> int:
        return add(a=1, b=2).set_cpu_limit("64").output

    if how == "environment":
        monkeypatch.setenv("RAYPIPE_SKIP_FEASIBILITY", "1")
        handle = raypipe.submit(autoscaled)
    else:
        handle = raypipe.submit(autoscaled, check_resources=False)
    assert handle.status() == "RUNNING"  # queued by Ray, waiting for a big enough node
    assert handle.cancel()
    result = handle.wait(timeout=30)
    assert result.status == "CANCELED" and result.tasks["add"].state == "CANCELED"


# -- run handle and cancel -------------------------------------------------------------


def test_handle_reports_running_then_the_result_and_wait_can_time_out(tmp_path: Path) -> None:
    go = tmp_path / "go"

    @dsl.pipeline(name="gated")
    def gated(path: str) -> str:
        return wait_for_file(path=path, then_sleep=0).output

    handle = raypipe.submit(gated, {"path": str(go)})
    assert len(handle.run_id) == 32 and handle.pipeline == "gated"
    assert handle.status() == "RUNNING" and not handle.done()
    with pytest.raises(TimeoutError, match="has not finished after 0.2 s"):
        handle.wait(timeout=0.2)
    with pytest.raises(raypipe.RunNotFinishedError, match="call wait()"):
        handle.result()
    go.write_text("")
    results: list[raypipe.RunResult] = []
    waiters = [threading.Thread(target=lambda: results.append(handle.wait())) for _ in range(3)]
    for waiter in waiters:
        waiter.start()
    for waiter in waiters:
        waiter.join()
    assert [r.output for r in results] == ["done"] * 3
    assert results[0] is results[1] is handle.result()
    assert handle.status() == "SUCCEEDED" and handle.done()
    assert not handle.cancel()  # nothing left to cancel


def test_cancel_stops_a_running_step_within_two_seconds(tmp_path: Path) -> None:
    marker = tmp_path / "pid"

    @dsl.pipeline(name="long")
    def long(marker: str) -> str:
        slow = sleepy(seconds=600, marker=marker)
        return echo(text="after").after(slow).output

    handle = raypipe.submit(long, {"marker": str(marker)})
    _eventually(lambda: marker.exists() and marker.read_text() != "")
    pid = int(marker.read_text())
    started = time.monotonic()
    assert handle.cancel()
    result = handle.wait(timeout=10)
    assert time.monotonic() - started < 2.0
    _eventually(lambda: not _alive(pid), timeout=2.0)
    assert result.status == "CANCELED" and handle.status() == "CANCELED"
    assert result.tasks["sleepy"].state == "CANCELED"
    assert result.tasks["echo"].state == "CANCELED"
    assert result.error is None and result.outputs == {}


def test_ctrl_c_during_run_cancels_every_step_it_submitted(tmp_path: Path) -> None:
    marker = tmp_path / "pid"

    @dsl.pipeline(name="interrupted")
    def interrupted(marker: str) -> int:
        return sleepy(seconds=600, marker=marker).output

    def press_ctrl_c() -> None:
        _eventually(lambda: marker.exists() and marker.read_text() != "")
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    # Python leaves SIGINT ignored when it starts ignoring it, as everything started in the
    # background by a non-interactive shell does (a CI script run with `&`): Ctrl-C as a
    # terminal delivers it needs Python's own handler.
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    presser = threading.Thread(target=press_ctrl_c)
    presser.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            raypipe.run(interrupted, {"marker": str(marker)})
    finally:
        presser.join()
        signal.signal(signal.SIGINT, handler)
    pid = int(marker.read_text())
    _eventually(lambda: not _alive(pid), timeout=2.0)


# -- failure policy --------------------------------------------------------------------


@dsl.pipeline(name="fail-fast")
def branching(failed: str, started: str) -> None:
    """One branch fails while another runs; a step after the running one has not started."""
    bad = touch_and_fail(path=failed, once_exists=started)  # fails once the other has started
    add(a=bad.output, b=1)  # needs the failure
    running = wait_for_file(path=failed, then_sleep=0.3, started=started)  # runs through it
    echo(text="later").after(running)  # starts only after the failure


def test_first_failure_lets_running_steps_finish_and_starts_no_new_ones(tmp_path: Path) -> None:
    result = raypipe.run(branching, {"failed": str(tmp_path / "f"), "started": str(tmp_path / "s")})
    assert result.status == "FAILED"
    states = {name: task.state for name, task in result.tasks.items()}
    assert states == {
        "touch-and-fail": "FAILED",
        "add": "UPSTREAM_FAILED",
        "wait-for-file": "SUCCEEDED",
        "echo": "CANCELED",
    }
    assert result.error is not None and result.error.task == "touch-and-fail"


def test_without_fail_fast_independent_branches_run_to_the_end(tmp_path: Path) -> None:
    arguments = {"failed": str(tmp_path / "f"), "started": str(tmp_path / "s")}
    result = raypipe.run(branching, arguments, fail_fast=False)
    assert result.status == "FAILED"
    assert result.tasks["echo"].state == "SUCCEEDED"
    assert result.tasks["add"].state == "UPSTREAM_FAILED"


def test_fail_fast_with_raise_on_failure_raises_the_failing_step() -> None:
    @dsl.pipeline(name="fast")
    def fast() -> None:
        fail(message="first")

    with pytest.raises(raypipe.StepFailedError, match=r"fast\.fail: .*ValueError: first"):
        raypipe.run(fast, raise_on_failure=True)


def test_a_retrying_step_stops_retrying_once_the_run_has_failed(tmp_path: Path) -> None:
    @dsl.pipeline(name="stop-retrying")
    def stop_retrying(failed: str, started: str) -> None:
        touch_and_fail(path=failed, once_exists=started)
        wait_then_fail(path=failed, started=started).set_retry(5, backoff_duration=1)

    result = raypipe.run(
        stop_retrying, {"failed": str(tmp_path / "f"), "started": str(tmp_path / "s")}
    )
    retrying = result.tasks["wait-then-fail"]
    assert retrying.state == "FAILED"
    assert len(retrying.attempts) == 1  # not 6: the run had failed, a retry could not save it
