"""A real multi-node Ray cluster on this machine, started and stopped by a test module.

A head (with the dashboard, so the Job Submission API answers) and one worker node that
carries Ray node labels, one CPU each, with a temp dir, ports and an auth token of their
own. Each node is one ``ray start --block`` process leading a session of its own; drivers
run in subprocesses with :attr:`LocalCluster.env`, as a user's would.

Stopping exactly these processes (never ``ray stop``, never by name), as
``tests/test_cluster.py`` found works: SIGTERM to each ``ray start --block`` process alone,
with ``RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S=0``; then ``ps`` must show nothing left in those
sessions or naming the temp dir or the GCS port; anything left is SIGKILLed and fails the
teardown.

Example:
    >>> with local_cluster({"raypipe.io/pool": "gpu"}) as cluster:   # doctest: +SKIP
    ...     subprocess.run(["raypipe", "submit", "p.yaml", "--address", cluster.dashboard],
    ...                    env=cluster.env)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_START_TIMEOUT_S = 90.0  # both nodes up and registered (about 10-20 s on 2 busy cores)
_STOP_TIMEOUT_S = 15.0  # a node stops in 1-2 s once its drain wait is off
RESULT_MARK = "RAYPIPE-RESULT "  # the line of a driver's stdout that carries its summary
_FAULTS = Path(__file__).parent / "faults"  # on the nodes' PYTHONPATH (faults/sitecustomize.py)
_CLIENT_SERVER_FAILURES = "client-server-failures"  # in temp_dir: how many to fail


@dataclass(frozen=True)
class LocalCluster:
    """A head and a labelled worker node on this machine, and how drivers reach them."""

    address: str  # host:port of the head's GCS
    client_address: str  # ray://host:port of the head's Ray Client server
    dashboard: str  # http://host:port of the head's dashboard (Job Submission API)
    head_id: str
    worker_id: str  # the node with the labels
    env: dict[str, str]  # environment for drivers: this cluster's token, no inherited RAY_*
    temp_dir: Path
    # start/stop labelled workers (tests of a lost node); the cluster's teardown stops them
    _workers: _Workers | None = field(default=None, repr=False, compare=False)

    def stop_worker(self) -> None:
        """Stop the newest labelled worker node, as a lost node: SIGTERM to its
        ``ray start`` (which kills its raylet and workers); the head keeps running."""
        assert self._workers is not None, "a LocalCluster from local_cluster() only"
        self._workers.stop_newest()

    def start_worker(self) -> str:
        """Start another worker node with the cluster's labels; its node id once registered
        (the cluster then has two alive nodes again)."""
        assert self._workers is not None, "a LocalCluster from local_cluster() only"
        return self._workers.start()

    def fail_client_servers(self, count: int) -> None:
        """Make the next ``count`` server processes that the head's Ray Client server
        starts for connecting drivers exit as they start (``faults/sitecustomize.py``)."""
        (self.temp_dir / _CLIENT_SERVER_FAILURES).write_text(str(count))

    def client_servers_to_fail(self) -> int:
        """How many of the failures :meth:`fail_client_servers` asked for are still to come."""
        path = self.temp_dir / _CLIENT_SERVER_FAILURES
        return int(path.read_text() or 0) if path.exists() else 0

    def logs(self, pattern: str, chars: int = 2000) -> str:
        """The ends of this cluster's Ray logs matching ``pattern``, to explain a failure."""
        paths = sorted(self.temp_dir.glob(f"session_*/logs/{pattern}"))
        return "".join(f"\n--- {p.name}\n{p.read_text(errors='replace')[-chars:]}" for p in paths)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.2)


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def hermetic_env(**extra: str) -> dict[str, str]:
    """This process's environment without Ray or raypipe settings (the session's own
    ``ray.init`` sets ``RAY_AUTH_MODE``, and a developer may have ``RAY_ADDRESS``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "RAYPIPE_"))}
    # The cluster's processes and job drivers find this Python's `raypipe` and `python`.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def run_driver(script: str, *args: str, env: Mapping[str, str], timeout: float) -> Any:
    """Run ``script`` (indented source) in a fresh Python and return its JSON summary."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        env=dict(env),
        cwd=Path(__file__).parent.parent.parent,  # `tests.*` is importable
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            return json.loads(line.removeprefix(RESULT_MARK))
    raise AssertionError(
        f"driver exited {done.returncode} without a summary\n"
        f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
    )


class RayStartNode:
    """One ``ray start --block`` process, leader of a session of its own."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ray.scripts.scripts", "start", "--block", *args],
                env=env,
                cwd=log.parent,  # not the repository: its processes import nothing from there
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own session and process group, id = its pid
            )

    def check_running(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"ray start ({self.name}) exited {self.process.returncode}:\n{self.tail()}"
            )

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        """SIGTERM to the ``ray start`` process alone: its handler kills its Ray processes."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=_STOP_TIMEOUT_S)


class _Workers:
    """The labelled worker nodes of a cluster: started on demand, appended to its nodes."""

    def __init__(
        self,
        start: Callable[[], RayStartNode],
        nodes: list[RayStartNode],
        address: str,
        env: dict[str, str],
        labels: Mapping[str, str],
    ) -> None:
        self._start, self._nodes, self._address = start, nodes, address
        self._env, self._labels = env, labels
        self.known: set[str] = set()  # ids of the labelled nodes started so far

    def stop_newest(self) -> None:
        workers = [n for n in self._nodes if n.name.startswith("worker")]
        workers[-1].stop()

    def start(self) -> str:
        node = self._start()
        running = sum(n.process.poll() is None for n in self._nodes)
        listed: dict[str, dict[str, str]] = run_driver(
            _NODES_SCRIPT,
            self._address,
            str(running),
            env=self._env,
            timeout=_START_TIMEOUT_S + 30,
        )
        node.check_running()
        new = [
            n
            for n, lab in listed.items()
            if all(lab.get(k) == v for k, v in self._labels.items()) and n not in self.known
        ]
        if len(listed) != running or len(new) != 1:
            raise RuntimeError(f"alive nodes and their labels: {listed}\n{node.tail()}")
        self.known.add(new[0])
        return new[0]


def _cluster_processes(sessions: set[int], temp_dir: Path, port: int) -> dict[int, str]:
    """Live processes of the cluster, by pid: those in a session a ``ray start`` leads, or
    naming its temp dir or GCS port (found with ``ps``, never by a program's name)."""
    names_port = re.compile(rf":{port}(?!\d)")
    listing = subprocess.run(
        ["ps", "-eo", "pid=,sid=,stat=,args="],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    found = {}
    for line in listing.splitlines():
        pid, sid, stat, args = (line.split(None, 3) + [""])[:4]
        if stat.startswith("Z") or int(pid) == os.getpid():
            continue  # a zombie is only waiting for its parent (or init) to reap it
        if int(sid) in sessions or str(temp_dir) in args or names_port.search(args):
            found[int(pid)] = args
    return found


def stop_cluster(nodes: list[RayStartNode], temp_dir: Path, port: int) -> None:
    """Stop the nodes, check that all their processes went, and SIGKILL any that did not."""
    for node in reversed(nodes):  # the worker first, while the head's GCS still answers
        node.stop()
    sessions = {node.process.pid for node in nodes}

    def gone() -> bool:
        return not _cluster_processes(sessions, temp_dir, port)

    try:
        wait_for(gone, _STOP_TIMEOUT_S, "the cluster's processes to exit")
    except TimeoutError:
        left = _cluster_processes(sessions, temp_dir, port)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
                os.kill(pid, signal.SIGKILL)
        wait_for(gone, _STOP_TIMEOUT_S, "SIGKILLed processes to exit")
        raise AssertionError(f"processes outlived `ray start` (SIGKILLed): {left}") from None


_NODES_SCRIPT = f"""
    import json, sys, time
    import ray

    ray.init(address=sys.argv[1], logging_level="ERROR")
    want = int(sys.argv[2]) if len(sys.argv) > 2 else 2  # alive nodes to wait for
    deadline = time.monotonic() + {_START_TIMEOUT_S}
    while True:
        alive = [n for n in ray.nodes() if n["Alive"]]
        if len(alive) == want or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    print("{RESULT_MARK}" + json.dumps({{n["NodeID"]: n.get("Labels", {{}}) for n in alive}}))
"""


@contextlib.contextmanager
def local_cluster(worker_labels: Mapping[str, str]) -> Iterator[LocalCluster]:
    """A head (no labels of ours, the dashboard on) and a worker with ``worker_labels``,
    up and registered; stopped, and checked gone, afterwards."""
    # Short and under /tmp: Ray puts Unix sockets in it (paths are limited to ~107 bytes).
    temp_dir = Path(tempfile.mkdtemp(prefix="raypipe-lc-"))
    token = temp_dir / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env = hermetic_env(
        # `ray start` turns token authentication on when ~/.ray/auth_token exists, while
        # ray.init(address=...) never does: set it explicitly, with a token of our own.
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN_PATH=str(token),
        # On SIGTERM a node first asks the GCS to drain it, for up to 30 s by default.
        RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",
        # Job drivers run in the head's environment: keep their files in the temp dir.
        RAYPIPE_HOME=str(temp_dir / "raypipe-home"),
    )
    # The nodes' own environment: with the faults a test can inject (none until asked).
    node_env = {
        **env,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(_FAULTS), env.get("PYTHONPATH")])),
        "RAYPIPE_TEST_CLIENT_SERVER_FAILURES": str(temp_dir / _CLIENT_SERVER_FAILURES),
        # How long the Ray Client server waits for a driver's server process to answer
        # (30 s by default): a failed one is then reported in 10 s (it answers in 1-5 s).
        "RAY_CLIENT_SERVER_CHECK_CHANNEL_TIMEOUT_S": "10",
    }
    port, client_port, dashboard_port = free_port(), free_port(), free_port()
    address = f"127.0.0.1:{port}"

    def node_args() -> list[str]:
        return [
            "--num-cpus=1",
            "--node-ip-address=127.0.0.1",  # Ray substitutes this machine's IP for loopback
            "--disable-usage-stats",
            # The defaults (52365, ...) are taken by the first node (or anyone's Ray).
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
        ]

    nodes: list[RayStartNode] = []
    try:
        head = RayStartNode(
            "head",
            [
                "--head",
                f"--port={port}",
                f"--ray-client-server-port={client_port}",  # not the fixed default 10001
                "--include-dashboard=true",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={dashboard_port}",
                f"--temp-dir={temp_dir}",
                *node_args(),
            ],
            node_env,
            temp_dir / "head.log",
        )
        nodes.append(head)

        def gcs_answers() -> bool:
            head.check_running()
            return answers(port)

        wait_for(gcs_answers, _START_TIMEOUT_S, "the head's GCS")
        labels = ",".join(f"{k}={v}" for k, v in worker_labels.items())

        def start_worker() -> RayStartNode:
            count = sum(n.name.startswith("worker") for n in nodes)
            name = "worker" if count == 0 else f"worker-{count + 1}"
            node = RayStartNode(
                name,
                [f"--address={address}", f"--labels={labels}", *node_args()],
                node_env,
                temp_dir / f"{name}.log",
            )
            nodes.append(node)
            return node

        workers = _Workers(start_worker, nodes, address, env, worker_labels)
        start_worker()
        listed: dict[str, dict[str, str]] = run_driver(
            _NODES_SCRIPT, address, env=env, timeout=_START_TIMEOUT_S + 30
        )
        for node in nodes:
            node.check_running()
        labelled = [
            n for n, lab in listed.items() if all(lab.get(k) == v for k, v in worker_labels.items())
        ]
        if len(listed) != 2 or len(labelled) != 1:
            raise RuntimeError(f"alive nodes and their labels: {listed}\n{head.tail()}")

        def dashboard_answers() -> bool:
            head.check_running()
            return answers(dashboard_port)

        wait_for(dashboard_answers, _START_TIMEOUT_S, "the head's dashboard")
        (worker_id,) = labelled
        (head_id,) = set(listed) - {worker_id}
        workers.known.add(worker_id)
        yield LocalCluster(
            address=address,
            client_address=f"ray://127.0.0.1:{client_port}",
            dashboard=f"http://127.0.0.1:{dashboard_port}",
            head_id=head_id,
            worker_id=worker_id,
            env=env,
            temp_dir=temp_dir,
            _workers=workers,
        )
    finally:
        try:
            stop_cluster(nodes, temp_dir, port)
        finally:
            shutil.rmtree(temp_dir, ignore_errors=True)
