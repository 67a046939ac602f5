"""A training step's workers land on the worker group of its image, on a real two-node cluster.

The cluster's worker node carries the worker-group label of ``pipelines.IMAGE``; the head
carries none. A training step with that image is scheduled there (its own task by the
step's selector, its Ray Train workers by ``ScalingConfig(label_selector=...)``), although
the head has a free CPU too.
"""

from __future__ import annotations

import pytest

from tests.cluster.local_cluster import LocalCluster, run_driver

pytest.importorskip("torch", reason="training steps need raypipe[torch]")
pytestmark = pytest.mark.slow  # the trainer takes 10-20 s to start

_SCRIPT = """
import json, sys

import ray

import raypipe
from raypipe import dsl
from tests.cluster.pipelines import IMAGE


@dsl.component(train=dsl.TorchDistributed(num_workers=1), image=IMAGE)
def fit() -> str:
    import ray
    import raypipe.train

    raypipe.train.report({"loss": 1.0})
    return ray.get_runtime_context().get_node_id()


@dsl.pipeline(name="placed-training")
def placed_training() -> str:
    return fit().output


result = raypipe.run(placed_training, address=sys.argv[1], tracking=False)
print("RAYPIPE-RESULT " + json.dumps({
    "status": result.status.value,
    "error": result.error and result.error.message,
    "worker_node": result.output,
    "step_node": result.tasks["fit"].node_id,
}))
"""


def test_a_training_steps_workers_run_in_the_worker_group_of_its_image(
    cluster: LocalCluster,
) -> None:
    summary = run_driver(_SCRIPT, cluster.address, env=cluster.env, timeout=240)

    assert summary["status"] == "SUCCEEDED", summary["error"]
    assert summary["worker_node"] == cluster.worker_id  # rank 0 ran on the labelled node
    assert summary["step_node"] == cluster.worker_id
