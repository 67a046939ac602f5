"""Pipelines and helpers the reliability tests share with the drivers they start.

Drivers run in subprocesses (``python -c ...`` with the repository as working directory),
so the components live in an importable module, not in a test function.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from raypipe import dsl

CHAIN_LENGTH = 10


def full_counts() -> bool:
    """Whether to run the issue's full counts (``RAYPIPE_RELIABILITY_FULL=1``) instead of
    the smaller ones ``make test`` runs."""
    return os.environ.get("RAYPIPE_RELIABILITY_FULL", "") == "1"


def chain_value(start: int, steps: int = CHAIN_LENGTH) -> int:
    """What :func:`ten_steps` returns for ``start``: the expected output, computed here."""
    value = start
    for index in range(steps):
        value = (value * 31 + index) % 1_000_003
    return value


@dsl.component
def advance(value: int, index: int, target: int, workdir: str) -> int:
    """One link of the chain. It writes its worker's pid to ``{workdir}/{index}.pid`` so
    the test can kill the worker; the ``target`` link holds for up to 10 s on its first
    attempt (the test kills it meanwhile), the others finish at once."""
    folder = Path(workdir)
    (folder / f"{index}.pid.tmp").write_text(str(os.getpid()))
    os.replace(folder / f"{index}.pid.tmp", folder / f"{index}.pid")  # read whole or not at all
    first = folder / f"{index}.first"
    if index == target and not first.exists():
        first.write_text("")
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and not (folder / "stop").exists():
            time.sleep(0.01)
    return (value * 31 + index) % 1_000_003


@dsl.pipeline(name="ten-steps")
def ten_steps(start: int, target: int, workdir: str) -> int:
    """Ten steps in a chain, each with two retries."""
    value = start
    for index in range(CHAIN_LENGTH):
        task = advance(value=value, index=index, target=target, workdir=workdir).set_retry(2)
        value = task.output
    return value


@dsl.component(persist="sync", track=True)
def logged_step(log: str, index: int, previous: str) -> str:
    """Append ``start i`` and ``end i`` to ``log`` around a short wait; its output is stored
    before the next step starts (``persist="sync"``), so a started successor means it
    finished for good."""
    with open(log, "a") as f:
        f.write(f"start {index}\n")
    time.sleep(0.4)
    with open(log, "a") as f:
        f.write(f"end {index}\n")
    return f"{previous}{index}"


RESUMABLE_STEPS = 6


@dsl.pipeline(name="crash-resume")
def crash_resume(log: str) -> str:
    """Six logged steps in a chain."""
    previous = ""
    for index in range(RESUMABLE_STEPS):
        previous = logged_step(log=log, index=index, previous=previous).output
    return previous


@dsl.component(track=True)
def measured(x: int, gate: str) -> float:
    """A tracked step (its own MLflow run) that waits for the ``gate`` file, if named."""
    while gate and not os.path.exists(gate):
        time.sleep(0.02)
    return float(x) / 2


@dsl.pipeline(name="outage")
def outage(gate: str) -> float:
    """A tracked step, one that waits for the gate, and a third after it."""
    first = measured(x=1, gate="")
    second = measured(x=2, gate=gate).after(first)
    return measured(x=3, gate="").after(second).output


@dsl.component
def combine(n: int, lr: float, name: str, tags: list, config: dict) -> str:
    """Every kind of parameter a pipeline argument can be."""
    return f"{name}:{n}:{lr}:{len(tags)}:{sorted(config)}"


@dsl.component
def double(x: int) -> int:
    return 2 * x


@dsl.pipeline(name="typed-inputs")
def typed_inputs(n: int, lr: float, name: str, tags: list, config: dict, flag: bool = False) -> str:
    """Typed inputs, a loop and a condition: a document with most of the IR's parts."""
    with dsl.ParallelFor([1, 2, 3]) as item:
        double(x=item)
    with dsl.If(flag == True):  # noqa: E712 - a pipeline condition, not a Python comparison
        double(x=n)
    return combine(n=n, lr=lr, name=name, tags=tags, config=config).output


@dsl.component
def count_to(n: int) -> list:
    return list(range(n))


@dsl.component
def increment(x: int) -> int:
    return x + 1


@dsl.component
def add_up(xs: list) -> int:
    return sum(xs)


@dsl.pipeline(name="wide-loop")
def wide_loop(n: int) -> int:
    """A loop over ``n`` items a step made, each result collected by one step."""
    items = count_to(n=n)
    with dsl.ParallelFor(items.output) as x:
        one = increment(x=x)
    return add_up(xs=dsl.Collected(one.output)).output


@dsl.component
def exclaim(text: str) -> str:
    return text + "!"


@dsl.component
def text_length(text: str) -> int:
    return len(text)


@dsl.pipeline(name="big-parameter")
def big_parameter(text: str) -> int:
    """A large string argument through two steps, as a parameter both times."""
    return text_length(text=exclaim(text=text).output).output


@dsl.component
def big_array(mib: int, seed: int) -> np.ndarray:
    """``mib`` MiB of int64s: ``seed, seed + 1, ...``."""
    return np.arange(seed, seed + mib * 1024 * 1024 // 8, dtype=np.int64)


@dsl.component
def array_sums(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> list:
    """The sum and size of each array (every one read whole)."""
    return [[int(x.sum()), int(x.nbytes)] for x in (a, b, c, d)]


@dsl.component
def array_sum(a: np.ndarray) -> list:
    return [int(a.sum()), int(a.nbytes)]


@dsl.pipeline(name="beyond-the-store")
def beyond_the_store(big_mib: int, part_mib: int) -> list:
    """Four arrays of ``part_mib`` MiB read by one step, then one of ``big_mib`` MiB."""
    parts = [big_array(mib=part_mib, seed=i) for i in range(4)]
    four = array_sums(a=parts[0].output, b=parts[1].output, c=parts[2].output, d=parts[3].output)
    return array_sum(a=big_array(mib=big_mib, seed=0).after(four).output).output


@dsl.component(num_cpus=1)
def on_some_node(folder: str, name: str) -> str:
    """Say which node runs this attempt (a line in ``{folder}/{name}``), then hold until
    ``{folder}/release`` exists (up to 60 s); return ``name``."""
    import ray  # in the step: this module is also imported where Ray is not running

    with open(Path(folder) / name, "a") as f:
        f.write(ray.get_runtime_context().get_node_id() + "\n")
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline and not (Path(folder) / "release").exists():
        time.sleep(0.05)
    return name


@dsl.component
def joined(a: str, b: str) -> str:
    return f"{a}+{b}"


@dsl.pipeline(name="movable")
def movable(folder: str) -> str:
    """Two one-CPU steps side by side (on a two-node cluster of one CPU each, one per
    node), retried if their worker dies, and a step after both."""
    a = on_some_node(folder=folder, name="a").set_retry(2)
    b = on_some_node(folder=folder, name="b").set_retry(2)
    return joined(a=a.output, b=b.output).output


SPARE_LABELS = {"raypipe.io/pool": "spare"}  # the worker node's labels in test_node_loss


@dsl.pipeline(name="pinned")
def pinned(folder: str) -> str:
    """A step that may run only on nodes labelled ``raypipe.io/pool``, retried if its
    worker dies."""
    return (
        on_some_node(folder=folder, name="pinned")
        .set_retry(2)
        .set_label_selector(SPARE_LABELS)
        .output
    )


SECRET_SOURCE = "RAYPIPE_RELIABILITY_TOKEN"  # the driver's variable the secret is read from


@dsl.component(env={"API_TOKEN": dsl.Secret(SECRET_SOURCE)}, track=True)
def uses_token(greeting: str) -> str:
    """Print the secret (as careless code would) and return its digest, which proves the
    step had it."""
    import hashlib

    token = os.environ["API_TOKEN"]
    print(f"{greeting}, calling the service with {token}")
    return hashlib.sha256(token.encode()).hexdigest()


@dsl.component
def leaks_token() -> str:
    """Fail with the secret in the error, as careless code would."""
    raise ValueError(f"the service refused token {os.environ['TOKEN']}")


@dsl.pipeline(name="with-secrets")
def with_secrets(greeting: str = "hello") -> str:
    """One step with a secret from its component, one from ``set_env_variable``."""
    leaks_token().set_env_variable("TOKEN", dsl.Secret(SECRET_SOURCE))
    return uses_token(greeting=greeting).output


@dsl.component
def privileges() -> dict:
    """Who the step runs as, and what runs around it."""
    parent = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()
    return {
        "uid": os.getuid(),
        "euid": os.geteuid(),
        "gid": os.getgid(),
        "parent": parent,
        "children": children,
        "docker_socket_open": any(
            os.path.realpath(f"/proc/self/fd/{fd}") == "/var/run/docker.sock"
            for fd in os.listdir("/proc/self/fd")
        ),
    }


@dsl.pipeline(name="privileges")
def step_privileges() -> dict:
    return privileges().output
