"""A fault the cluster tests inject into their Ray nodes' Python processes.

This directory is on the ``PYTHONPATH`` of the nodes of
:func:`tests.cluster.local_cluster.local_cluster`, so Python imports this module as each
of their Python processes starts. ``RAYPIPE_TEST_CLIENT_SERVER_FAILURES`` names a file
holding a count N (:meth:`LocalCluster.fail_client_servers` writes it): the next N server
processes that the head's Ray Client server starts for connecting drivers exit at once,
as Ray's own now and then do on a busy head. Without the file nothing happens.
"""

from __future__ import annotations

import os
import sys


def _fail_client_server() -> None:
    path = os.environ.get("RAYPIPE_TEST_CLIENT_SERVER_FAILURES")
    # The per-driver server starts as `python .../setup_worker.py -m ray.util.client.server
    # ... --mode=specific-server` (which then execs itself without setup_worker.py).
    if not path or "--mode=specific-server" not in sys.argv:
        return
    if not sys.argv[0].endswith("setup_worker.py"):
        return
    try:
        with open(path) as counter:
            left = int(counter.read().strip() or 0)
    except FileNotFoundError:
        return
    if left > 0:
        with open(path, "w") as counter:
            counter.write(str(left - 1))
        os._exit(1)


_fail_client_server()
