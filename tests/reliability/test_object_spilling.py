"""Values larger than the object store: Ray spills them to disk and the run succeeds.

A driver subprocess starts a Ray of its own with a 256 MiB object store and a spilling
directory under the test's temp dir, and runs a pipeline whose values exceed it: four
128 MiB arrays read together by one step, then one array of 1 GiB (2 GiB with
``RAYPIPE_RELIABILITY_BIG_GIB=2``) passed to another step. Each step reads its arrays
whole and returns their sums, which must be exact; Ray's own memory summary must show
objects spilled, and lineage records the 1 GiB object by type and size.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import raypipe
from tests.cluster.local_cluster import hermetic_env, run_driver

pytestmark = pytest.mark.slow

BIG_MIB = 1024 * int(os.environ.get("RAYPIPE_RELIABILITY_BIG_GIB", "1"))
PART_MIB = 128
STORE_MIB = 256

_DRIVER = f"""
    import json, sys
    import ray, raypipe
    from ray._private.internal_api import memory_summary
    from tests.reliability.pipelines import beyond_the_store

    temp_dir, spill_dir, big_mib, part_mib = sys.argv[1:5]
    ray.init(
        num_cpus=2,
        object_store_memory={STORE_MIB} * 1024 * 1024,
        include_dashboard=False,
        logging_level="ERROR",
        _temp_dir=temp_dir,
        _system_config={{
            "object_spilling_config": json.dumps(
                {{"type": "filesystem", "params": {{"directory_path": spill_dir}}}}
            ),
        }},
    )
    result = raypipe.run(
        beyond_the_store, {{"big_mib": int(big_mib), "part_mib": int(part_mib)}}, tracking=True
    )
    summary = memory_summary(ray.get_runtime_context().gcs_address, stats_only=True)
    ray.shutdown()
    print("RAYPIPE-RESULT " + json.dumps({{
        "ok": result.ok,
        "error": str(result.error),
        "run_id": result.run_id,
        "four": result.tasks["array-sums"].outputs.get("Output"),
        "big": result.output,
        "summary": summary,
    }}))
"""


@pytest.fixture()
def short_temp_dir() -> Iterator[Path]:
    """Ray's temp dir: short and under /tmp (Ray puts Unix sockets in it)."""
    folder = Path(tempfile.mkdtemp(prefix="raypipe-spill-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _arange_sum(seed: int, mib: int) -> int:
    n = mib * 1024 * 1024 // 8
    return n * seed + n * (n - 1) // 2


def test_values_beyond_the_object_store_spill_to_disk_and_arrive_whole(
    short_temp_dir: Path, raypipe_home: Path
) -> None:
    spill = short_temp_dir / "spill"
    env = hermetic_env(
        RAYPIPE_HOME=str(raypipe_home),
        RAYPIPE_QUIET="1",
        MLFLOW_TRACKING_URI=os.environ["MLFLOW_TRACKING_URI"],
    )
    summary = run_driver(
        _DRIVER,
        str(short_temp_dir / "ray"),
        str(spill),
        str(BIG_MIB),
        str(PART_MIB),
        env=env,
        timeout=600,
    )
    assert summary["ok"], summary["error"]
    assert summary["four"] == [
        [_arange_sum(seed, PART_MIB), PART_MIB * 1024 * 1024] for seed in range(4)
    ]
    assert summary["big"] == [_arange_sum(0, BIG_MIB), BIG_MIB * 1024 * 1024]
    spilled = re.search(r"Spilled (\d+) MiB", summary["summary"])
    assert spilled is not None and int(spilled.group(1)) > 0, summary["summary"]
    print(summary["summary"])

    _, rows = raypipe.lineage.sql(
        "SELECT object_type, size FROM events WHERE run_id = ? AND direction = 'input' "
        "AND execution_id = ?",
        [summary["run_id"], f"{summary['run_id']}/array-sum"],
    )
    assert rows == [("numpy.ndarray", BIG_MIB * 1024 * 1024)]
