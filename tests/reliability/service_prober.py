"""A health-check prober in its own process: ``python -m tests.reliability.service_prober
BASE OUT`` calls ``BASE/healthz`` every 20 ms and appends each latency (ms, or an error)
to the file OUT, one line each, until SIGTERM.

Its own process so that the test's clients, busy sending a burst, do not delay the
prober and inflate what it measures (in one process they share a GIL).
"""

from __future__ import annotations

import signal
import sys
import time
from types import FrameType

import httpx

PROBE_EVERY_S = 0.02


def probe(base: str, out: str) -> None:
    """Probe until SIGTERM; each line of ``out`` is a latency in ms, or ``error ...``."""
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    with httpx.Client(base_url=base, timeout=30) as http, open(out, "a") as sink:
        while not stopping:
            began = time.perf_counter()
            try:
                answered = http.get("/healthz")
            except httpx.HTTPError as exc:
                sink.write(f"error {type(exc).__name__}: {exc}\n")
            else:
                took = 1000 * (time.perf_counter() - began)
                ok = answered.status_code == 200
                sink.write(f"{took:.3f}\n" if ok else f"error {answered.status_code}\n")
            sink.flush()
            time.sleep(max(0.0, PROBE_EVERY_S - (time.perf_counter() - began)))


if __name__ == "__main__":
    probe(sys.argv[1], sys.argv[2])
