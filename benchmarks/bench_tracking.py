"""Tracking: the 100-step chain with tracking on (MLflow and lineage) against tracking off.

Both sides are raypipe, in the same process, alternating: ``raypipe.run(chain,
tracking=True)`` logs a parent MLflow run to the default local SQLite store and appends
the run's lineage Parquet files; ``tracking=False`` does neither. Caching is off on both
sides so every step runs. The time of a tracked run includes everything ``raypipe.run``
waits for before it returns. Target (issue 4): tracking on <= 1.5x tracking off.
"""

from __future__ import annotations

from typing import Any

from bench_chain import STEPS, chain_pipeline
from common import Case, main

import raypipe


def make_case() -> Case[raypipe.RunResult, raypipe.RunResult]:
    """A 100-step chain: tracking on vs off."""
    pipeline = chain_pipeline(STEPS)

    def check(result: raypipe.RunResult) -> None:
        assert result.status == "SUCCEEDED", result.error
        assert result.output == STEPS

    def run(tracking: bool) -> Any:
        return raypipe.run(pipeline, {"start": 0}, cache=False, tracking=tracking)

    return Case(
        name="tracking",
        description=f"chain of {STEPS} trivial steps, tracking on (MLflow + lineage) vs off",
        target=1.5,
        raypipe=lambda: run(True),
        raw=lambda: run(False),
        check_raypipe=check,
        check_raw=check,
        warmup=2,
        labels=("tracking on", "tracking off"),
    )


if __name__ == "__main__":
    main(make_case, default_reps=15)
