"""Remote submission and label-selector placement on a real two-node Ray cluster.

The package's one cluster (``conftest.py``): a head with the dashboard, and a worker
labelled ``raypipe.io/pool=gpu`` and with the worker-group label of ``pipelines.IMAGE``,
one CPU each, token authentication on. Pipelines go to it as a user's
would: ``raypipe submit`` (the Job Submission API) and ``raypipe.run(address="ray://...")``
(Ray Client), each from a subprocess with the cluster's environment.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from raypipe.dsl.placement import GROUP_LABEL, worker_group
from tests.cluster.local_cluster import LocalCluster, free_port, run_driver
from tests.cluster.pipelines import OTHER_IMAGE

_SUBMIT_TIMEOUT_S = 240.0  # a job: upload, start its driver, run (about 15-30 s here)
_PIPELINES = str(Path(__file__).parent / "pipelines.py")
_REPO = Path(__file__).parent.parent.parent

pytestmark = pytest.mark.slow  # the cluster takes 10-20 s to start


def _submit(
    cluster: LocalCluster, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``raypipe submit`` in a fresh process, as a user at a laptop would run it."""
    return subprocess.run(
        [sys.executable, "-m", "raypipe.cli", "submit", *args],
        env=cluster.env if env is None else env,
        cwd=_REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=_SUBMIT_TIMEOUT_S,
    )


def _explain(cluster: LocalCluster, done: subprocess.CompletedProcess[str]) -> str:
    return (
        f"exit {done.returncode}\n--- stdout\n{done.stdout[-4000:]}\n--- stderr\n"
        f"{done.stderr[-4000:]}{cluster.logs('job-driver-*.log')}"
    )


def _json_result(stdout: str) -> Any:
    """The ``--json`` result: the JSON document that ends stdout, after the job's logs."""
    start = stdout.rindex("\n{\n") + 1 if "\n{\n" in stdout else stdout.index("{")
    return json.loads(stdout[start:])


def test_submitted_pipeline_succeeds_with_logs_outputs_and_steps_on_their_nodes(
    cluster: LocalCluster,
) -> None:
    done = _submit(
        cluster,
        f"{_PIPELINES}:placement",
        "--address",
        cluster.dashboard,
        "--arg",
        "greeting=hi there",
        "--no-tracking",
        "--json",
    )
    assert done.returncode == 0, _explain(cluster, done)
    result = _json_result(done.stdout)
    assert result["status"] == "SUCCEEDED"
    output = result["outputs"]["Output"]
    assert output["greeting"] == "hi there"  # the argument reached the run
    # Every pinned step ran on the labelled node, and only there, although the head had
    # a CPU free (and is where a submitted job's driver, and so Ray's preference, is).
    assert output["pinned"] == [cluster.worker_id] * 3
    pinned = {n: t for n, t in result["tasks"].items() if n.endswith("/where")}
    assert len(pinned) == 3
    assert {t["node_id"] for t in pinned.values()} == {cluster.worker_id}  # raypipe's record
    # The step with image= went to the node labelled with its worker group.
    assert output["image"] == cluster.worker_id == result["tasks"]["in-image"]["node_id"]
    # The job's log streamed back: what the steps printed, without the result line.
    for tag in ("a", "b", "c", "image"):
        assert f"{tag} ran on node {cluster.worker_id}" in done.stdout
    assert "RAYPIPE-RESULT" not in done.stdout
    assert "SUCCEEDED" in done.stderr  # "job raysubmit_... at http://...: SUCCEEDED"


def test_a_step_whose_selector_matches_no_node_fails_the_job_before_any_step_runs(
    cluster: LocalCluster,
) -> None:
    done = _submit(
        cluster, f"{_PIPELINES}:misplaced", "--address", cluster.dashboard, "--no-tracking"
    )
    assert done.returncode == 2, _explain(cluster, done)
    group = worker_group(OTHER_IMAGE, None)
    # Both problems at once, each naming the pipeline, the task and the option.
    assert (
        "misplaced.where.label_selector: label_selector raypipe.io/pool=tpu matches no alive "
        "node (raypipe.io/pool=tpu matches none; the nodes have raypipe.io/pool=gpu)"
    ) in done.stdout
    assert (
        f"misplaced.where-2.image: runs on worker group {group!r} (node label "
        f"{GROUP_LABEL}={group}), and no alive node is in it"
    ) in done.stdout
    assert "nothing was started" in done.stdout
    assert "ran on node" not in done.stdout  # no step ran


def test_a_submitted_run_whose_step_fails_exits_1_with_the_steps_error(
    cluster: LocalCluster,
) -> None:
    done = _submit(
        cluster,
        f"{_PIPELINES}:failing",
        "--address",
        cluster.dashboard,
        "--arg",
        "reason=the bucket is empty",
        "--no-tracking",
        "--json",
    )
    assert done.returncode == 1, _explain(cluster, done)
    result = _json_result(done.stdout)
    assert result["status"] == "FAILED"
    assert result["error"]["task"] == "fail"
    assert result["error"]["type"] == "builtins.ValueError"
    assert result["error"]["message"] == "the bucket is empty"
    assert "FAILED" in done.stderr  # the job failed too (its driver exited 1)


def test_submit_without_the_clusters_token_is_refused_with_a_message_naming_the_token(
    cluster: LocalCluster,
) -> None:
    env = {k: v for k, v in cluster.env.items() if not k.startswith("RAY_AUTH")}
    done = _submit(cluster, f"{_PIPELINES}:placement", "--address", cluster.dashboard, env=env)
    assert done.returncode == 2, _explain(cluster, done)
    assert f"cannot connect to the Ray cluster at '{cluster.dashboard}'" in done.stderr
    assert "RAY_AUTH_TOKEN" in done.stderr
    wrong = {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64}
    done = _submit(cluster, f"{_PIPELINES}:placement", "--address", cluster.dashboard, env=wrong)
    assert done.returncode == 2, _explain(cluster, done)
    assert "RAY_AUTH_TOKEN" in done.stderr


def test_submit_to_an_address_where_nothing_listens_fails_at_once(cluster: LocalCluster) -> None:
    address = f"http://127.0.0.1:{free_port()}"
    done = _submit(cluster, f"{_PIPELINES}:placement", "--address", address)
    assert done.returncode == 2
    assert f"cannot connect to the Ray cluster at '{address}': nothing answers there" in (
        done.stderr
    )


_CLIENT_SCRIPT = """
    import json, sys, warnings
    import raypipe
    from raypipe.errors import ClusterConnectionError
    from tests.cluster.pipelines import placement

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = raypipe.run(placement, {"greeting": "via client"}, address=sys.argv[1],
                                 tracking=False)
        except ClusterConnectionError as exc:
            summary = {"connection_error": str(exc)}
        else:
            summary = {
                "status": str(result.status.value),
                "error": result.error and result.error.message,
                "output": result.output,
                "nodes": {name: task.node_id for name, task in result.tasks.items()},
            }
    summary["warnings"] = [str(w.message) for w in caught]
    print("RAYPIPE-RESULT " + json.dumps(summary))
"""


def _through_client(cluster: LocalCluster, tmp_path: Path) -> Any:
    env = {**cluster.env, "RAYPIPE_HOME": str(tmp_path / "home")}
    try:
        return run_driver(_CLIENT_SCRIPT, cluster.client_address, env=env, timeout=180)
    except AssertionError as exc:
        raise AssertionError(f"{exc}{cluster.logs('ray_client_server*')}") from None


def _retries(summary: dict[str, Any]) -> list[str]:
    return [w for w in summary["warnings"] if "connecting again" in w]


def test_run_through_ray_client_connects_again_when_its_server_dies_and_places_steps(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    # One driver through Ray Client (each costs the suite about 40 s): the server Ray
    # starts for it dies as it starts, raypipe connects again, and the run's steps land
    # where their labels say.
    cluster.fail_client_servers(1)
    summary = _through_client(cluster, tmp_path)
    assert cluster.client_servers_to_fail() == 0  # the fault did happen
    assert summary.get("status") == "SUCCEEDED", summary
    retry = _retries(summary)[0]  # (a real failure of Ray's may add a second)
    assert f"the Ray Client server at {cluster.client_address!r} could not start" in retry
    assert "(attempt 2 of 3)" in retry
    assert summary["output"]["greeting"] == "via client"
    assert summary["output"]["pinned"] == [cluster.worker_id] * 3
    assert summary["output"]["image"] == cluster.worker_id
    assert summary["nodes"]["in-image"] == cluster.worker_id
