"""``raypipe.run(..., address=...)``: which addresses a process may use; a wrong one fails fast.

Running on a real multi-node cluster is tested in ``tests/cluster/`` (one cluster started
for that package); here the session's own Ray and addresses where nothing listens.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import ray

import raypipe
from raypipe.runtime.cluster import ray_defaults
from tests.cluster.local_cluster import free_port, hermetic_env, run_driver
from tests.pipelines import addition

_RUN_TIMEOUT_S = 120.0  # one driver subprocess


_UNREACHABLE_SCRIPT = """
    import json, sys, time
    import raypipe
    from tests.pipelines import addition

    report = {}
    for address in sys.argv[1:]:
        started = time.monotonic()
        try:
            raypipe.run(addition, {"a": 1, "b": 2}, address=address)
            report[address] = ["no error", 0.0]
        except raypipe.ClusterConnectionError as e:
            report[address] = [str(e), time.monotonic() - started]
    print("RAYPIPE-RESULT " + json.dumps(report))
"""


def test_a_fresh_process_fails_fast_on_addresses_where_nothing_listens(tmp_path: Path) -> None:
    port = free_port()
    addresses = [f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"]
    home = tmp_path / "home"
    report = run_driver(
        _UNREACHABLE_SCRIPT,
        *addresses,
        env=hermetic_env(RAYPIPE_HOME=str(home)),
        timeout=_RUN_TIMEOUT_S,
    )
    for address in addresses:
        message, seconds = report[address]
        assert f"cannot connect to the Ray cluster at '{address}'" in message
        assert "nothing answers there" in message
        assert seconds < 10
    assert not home.exists()


def _session_gcs_port() -> int:
    return int(str(ray.get_runtime_context().gcs_address).rpartition(":")[2])


@pytest.mark.parametrize(
    "other",
    ["127.0.0.1:{free}", "localhost:{free}", "10.255.255.1:{session}", "ray://127.0.0.1:{free}"],
)
def test_connected_process_refuses_an_address_naming_another_cluster(other: str) -> None:
    address = other.format(free=free_port(), session=_session_gcs_port())
    gcs = ray.get_runtime_context().gcs_address
    started = time.monotonic()
    with pytest.raises(raypipe.ClusterConnectionError) as e:
        raypipe.run(addition, {"a": 1, "b": 2}, address=address)
    assert time.monotonic() - started < 5  # decided locally, nothing is dialled
    assert e.value.address == address
    assert f"already connected to the Ray cluster whose GCS is at {gcs}" in str(e.value)
    assert "ray.shutdown() first" in str(e.value)
    assert ray.is_initialized() and ray.get_runtime_context().gcs_address == gcs


@pytest.mark.parametrize("spelling", ["{gcs}", "127.0.0.1:{port}", "localhost:{port}"])
def test_connected_process_accepts_any_spelling_of_its_own_cluster(spelling: str) -> None:
    gcs = str(ray.get_runtime_context().gcs_address)
    address = spelling.format(gcs=gcs, port=_session_gcs_port())
    assert raypipe.run(addition, {"a": 1, "b": 2}, address=address).output == 13


@pytest.mark.parametrize("address", [None, "auto", "local"])
def test_connected_process_keeps_its_cluster_for_implicit_addresses(address: str | None) -> None:
    assert raypipe.run(addition, {"a": 1, "b": 2}, address=address).output == 13


def test_malformed_address_is_reported_even_when_connected() -> None:
    with pytest.raises(raypipe.ClusterConnectionError, match="expected host:port"):
        raypipe.run(addition, {"a": 1, "b": 2}, address="head-node")


_OWN_RAY_SCRIPT = """
    import json, os
    import psutil
    import raypipe
    from raypipe.runtime.cluster import RAY_DEFAULTS
    from tests.pipelines import addition

    result = raypipe.run(addition, {"a": 1, "b": 2}, tracking=False, cache=False, quiet=True)
    seen = {}
    for child in psutil.Process().children(recursive=True):
        if "raylet" in child.name():
            seen = {name: child.environ().get(name) for name in RAY_DEFAULTS}
    left = {name: os.environ.get(name) for name in RAY_DEFAULTS}
    print("RAYPIPE-RESULT " + json.dumps([result.output, seen, left]))
"""


def test_ray_raypipe_starts_gets_its_defaults_and_the_environment_is_left_as_it_was(
    tmp_path: Path,
) -> None:
    output, raylet, left = run_driver(
        _OWN_RAY_SCRIPT,
        env=hermetic_env(RAYPIPE_HOME=str(tmp_path / "home")),
        timeout=_RUN_TIMEOUT_S,
    )
    assert output == 13
    assert raylet == {"RAY_task_events_report_interval_ms": "100"}
    assert left == {"RAY_task_events_report_interval_ms": None}


def test_ray_defaults_leave_what_the_user_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_task_events_report_interval_ms", "2000")
    with ray_defaults():
        assert os.environ["RAY_task_events_report_interval_ms"] == "2000"
    assert os.environ["RAY_task_events_report_interval_ms"] == "2000"
    monkeypatch.delenv("RAY_task_events_report_interval_ms")
    with ray_defaults():
        assert os.environ["RAY_task_events_report_interval_ms"] == "100"
    assert "RAY_task_events_report_interval_ms" not in os.environ
