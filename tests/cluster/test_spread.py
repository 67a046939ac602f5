"""``raypipe.run(..., address=...)`` spreads a pipeline's steps over both nodes of the cluster.

The package's cluster (``conftest.py``): two nodes of one CPU each; four one-CPU steps that
each take a second go to both, and the step after them reads files written on both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cluster.local_cluster import LocalCluster, run_driver

pytestmark = pytest.mark.slow

# Components are defined in the driver script: raypipe ships them by value, so the workers
# of both nodes load them without this file on their path.
_SPREAD_SCRIPT = """
    import json, sys, time
    import ray
    import raypipe
    from raypipe import dsl
    from raypipe.dsl import Dataset, Input, Output

    @dsl.component(num_cpus=1)
    def nap(i: int, out: Output[Dataset]) -> int:
        time.sleep(1)  # long enough that a one-CPU node cannot take the next one meanwhile
        with open(out.path, "w") as f:
            f.write(str(i * i))
        return i * i

    @dsl.component(num_cpus=1)
    def gather(a: Input[Dataset], b: Input[Dataset], c: Input[Dataset], d: Input[Dataset]) -> str:
        return ",".join(open(x.path).read() for x in (a, b, c, d))

    @dsl.pipeline(name="spread")
    def spread() -> str:
        naps = [nap(i=i) for i in range(4)]
        return gather(**{k: n.outputs["out"] for k, n in zip("abcd", naps)}).output

    started = time.monotonic()
    result = raypipe.run(spread, address=sys.argv[1])
    summary = {
        "status": str(result.status),
        "output": result.output,
        "error": result.error and result.error.message,
        "seconds": time.monotonic() - started,
        "outputs": {name: task.outputs.get("Output") for name, task in result.tasks.items()},
        "nodes": {name: task.node_id for name, task in result.tasks.items()},
        "cluster": sorted(n["NodeID"] for n in ray.nodes() if n["Alive"]),
        "gcs": ray.get_runtime_context().gcs_address,
        "artifact_root": result.artifact_root,
        "connect": {},  # each further address: None if connect() accepts it, else the error
    }
    from raypipe.runtime.cluster import connect

    for address in sys.argv[2:]:
        try:
            connect(address)
            summary["connect"][address] = None
        except raypipe.ClusterConnectionError as e:
            summary["connect"][address] = str(e)
    print("RAYPIPE-RESULT " + json.dumps(summary))
"""


def _run_spread(cluster: LocalCluster, address: str, home: Path, *then_connect: str) -> Any:
    """Run the spread pipeline in a driver subprocess, then try ``connect`` on each of
    ``then_connect`` from that connected process."""
    env = {**cluster.env, "RAYPIPE_HOME": str(home)}
    try:
        return run_driver(_SPREAD_SCRIPT, address, *then_connect, env=env, timeout=120)
    except AssertionError as e:
        logs = cluster.logs("ray_client_server*" if address.startswith("ray://") else "*.err")
        raise AssertionError(f"{e}\n{logs}") from None


def _port(address: str) -> str:
    return address.rpartition(":")[2]


def _assert_spread_over_both_nodes(summary: Any, cluster: LocalCluster, home: Path) -> None:
    assert summary["status"] == "SUCCEEDED", summary["error"]
    assert summary["output"] == "0,1,4,9"  # gather read files written on both nodes
    squares = {"nap": 0, "nap-2": 1, "nap-3": 4, "nap-4": 9}
    assert {name: summary["outputs"][name] for name in squares} == squares
    both = {cluster.head_id, cluster.worker_id}
    assert set(summary["cluster"]) == both
    assert {summary["nodes"][name] for name in squares} == both
    assert summary["artifact_root"] == str(home / "artifacts")


def test_pipeline_steps_spread_over_both_nodes_of_the_cluster_at_address(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    same = f"localhost:{_port(cluster.address)}"
    other = cluster.client_address  # the same cluster, but not this connection
    summary = _run_spread(cluster, cluster.address, home, same, other)
    _assert_spread_over_both_nodes(summary, cluster, home)
    assert _port(summary["gcs"]) == _port(cluster.address)  # Ray reports the node's IP
    assert summary["connect"][same] is None
    assert "already connected to the Ray cluster whose GCS is at" in summary["connect"][other]
