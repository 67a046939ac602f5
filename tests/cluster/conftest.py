"""One real two-node Ray cluster for every test of this package (it takes 10-30 s to start).

A head with the dashboard, and a worker labelled ``raypipe.io/pool=gpu`` and with the
worker-group label of ``pipelines.IMAGE``, one CPU each, token authentication on
(:mod:`tests.cluster.local_cluster`). Tests send pipelines to it from subprocesses, as a
user's would; the test session's own Ray stays connected to its own cluster.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster.local_cluster import LocalCluster, local_cluster
from tests.cluster.pipelines import WORKER_LABELS


@pytest.fixture(scope="package")
def cluster() -> Iterator[LocalCluster]:
    with local_cluster(WORKER_LABELS) as started:
        yield started
