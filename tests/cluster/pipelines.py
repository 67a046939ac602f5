"""Pipelines whose steps say where they ran, for the multi-node cluster tests.

The worker node of the test cluster carries the labels :data:`POOL` and the worker-group
label of :data:`IMAGE`; the head carries neither.
"""

from __future__ import annotations

import time

import ray

from raypipe import dsl
from raypipe.dsl.placement import GROUP_LABEL, worker_group

IMAGE = "registry.example.com/ml/trainer:1.4"
OTHER_IMAGE = "registry.example.com/ml/server:2.0"
POOL = {"raypipe.io/pool": "gpu"}
WORKER_LABELS = {**POOL, GROUP_LABEL: worker_group(IMAGE, None)}


@dsl.component(num_cpus=1)
def where(tag: str) -> str:
    """Print and return the id of the node this step runs on (as Ray sees it)."""
    node = ray.get_runtime_context().get_node_id()
    time.sleep(1)  # long enough that an unpinned copy would go to the other, idle node
    print(f"{tag} ran on node {node}")
    return node


@dsl.component(num_cpus=1, image=IMAGE)
def in_image(tag: str) -> str:
    node = ray.get_runtime_context().get_node_id()
    print(f"{tag} ran on node {node}")
    return node


@dsl.component
def report(greeting: str, pinned: list[str], image: str) -> dict[str, object]:
    return {"greeting": greeting, "pinned": pinned, "image": image}


@dsl.pipeline(name="placement")
def placement(greeting: str = "hello") -> dict[str, object]:
    """Three steps pinned to the gpu pool, one in IMAGE's worker group."""
    with dsl.ParallelFor(["a", "b", "c"]) as tag:
        pinned = where(tag=tag).set_label_selector(POOL)
    image = in_image(tag="image")
    return report(greeting=greeting, pinned=dsl.Collected(pinned.output), image=image.output).output


@dsl.pipeline(name="misplaced")
def misplaced() -> None:
    """A step no node may run (no tpu pool) and one whose image has no worker group."""
    where(tag="nowhere").set_label_selector({"raypipe.io/pool": "tpu"})
    where(tag="elsewhere").set_container_image(OTHER_IMAGE)


@dsl.component
def fail(reason: str) -> int:
    raise ValueError(reason)


@dsl.pipeline(name="failing")
def failing(reason: str = "no data") -> int:
    """One step that raises."""
    return fail(reason=reason).output
