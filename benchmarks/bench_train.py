"""Training step: raypipe's ``TorchDistributed`` step against the same ``TorchTrainer`` by hand.

One workload, four ways, in one process on one Ray, interleaved: a small MLP trained on
scikit-learn's digits (1,437 standardised training images) for ``EPOCHS`` epochs on
``WORKERS`` Ray Train workers (DDP on CPU, each reading its shard through a
``DistributedSampler``), reporting the loss and a checkpoint (a state dict saved with
``torch.save``) every epoch and returning rank 0's last loss.

- **raypipe**: ``raypipe.run`` of a one-step pipeline whose step is
  ``@dsl.component(train=dsl.TorchDistributed(num_workers=WORKERS))``, the arrays passed
  as in-memory pipeline arguments, ``cache=False, tracking=False``; the last checkpoint
  becomes the step's ``Output[Model]``.
- **raypipe, tracking on**: the same with ``tracking=True`` (an MLflow parent run and the
  step's nested run with the learning curve in the local SQLite store, and lineage),
  timed until ``raypipe.run`` returns as in ``bench_tracking.py``; the benchmark then
  waits, untimed, until the background writer has given MLflow everything.
- **raw Ray task**: a ``@ray.remote(num_cpus=0)`` task, given the same arrays, that builds
  the same ``TorchTrainer`` (same scaling, backend, failure and checkpoint settings) and
  calls ``fit()``; ``ray.get`` of its return value. This is what raypipe's step does
  without raypipe, so raypipe / raw Ray task is raypipe's overhead (target <= 1.1x).
- **trainer.fit() in the driver**: the same trainer built and fitted in the driver, no
  task around it.

The training loop is one function, :func:`fit_loop`, given raypipe's or Ray Train's
report. Ray Train's controller takes one report from the workers per poll
(``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``, 2 s by default), so with Ray's default every
report after the first waits up to 2 s and a fit's time moves in 2-second steps. The
benchmark sets the interval to ``--poll`` seconds (default 0.1) before Ray starts, for
all four alike; ``--poll 2`` measures with Ray's default.

Also reported: how long the untracked ``raypipe.run`` took beyond the step's attempt
(``RunResult`` attempt times), i.e. raypipe's driver-side cost, which the noise of a
10-second fit on a shared machine hides in the ratio. 4 rounds (each of the four orders
of :data:`ORDERS` once) after 1 warm-up take about 5 minutes on 2 CPUs.

Usage: ``python benchmarks/bench_train.py [--reps 4] [--warmup 1] [--poll 0.1] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import ray
import ray.train
import ray.train.torch
import sklearn.datasets
import torch
from common import Comparison, Stats, format_table, prepare_environment, start_ray
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import raypipe
import raypipe.tracking
import raypipe.train
from raypipe import dsl
from raypipe.dsl import Model, Output

WORKERS = 2
EPOCHS = 5
BATCH_SIZE = 32
LR = 0.01
TARGET = 1.1

RAYPIPE = "raypipe"
RAYPIPE_TRACKED = "raypipe, tracking on"
RAW_TASK = "raw Ray task"
DRIVER = "trainer.fit() in driver"
SYSTEMS = (RAYPIPE, RAW_TASK, DRIVER, RAYPIPE_TRACKED)
# The order of the systems in successive rounds: a Williams square, so that over 4 rounds
# each system follows each other one once (what a run leaves behind, such as training
# workers still exiting, falls on every system alike; a plain rotation would always put
# the same system after the tracked run).
ORDERS = ((0, 1, 3, 2), (1, 2, 0, 3), (2, 3, 1, 0), (3, 0, 2, 1))
SETTLE_S = 1.0  # untimed pause before each run, for the last one's workers to exit
OUTSIDE = "raypipe outside the step"

Run = Callable[[], tuple[float, float | None]]  # the loss; raypipe's time outside the step

Report = Callable[[Mapping[str, float], Mapping[str, Any]], None]


def digits() -> tuple[np.ndarray, np.ndarray]:
    """The training set: 80% of the digits, standardised; float32 pixels, int64 labels."""
    x, y = sklearn.datasets.load_digits(return_X_y=True)
    x, y = x[: len(x) * 4 // 5], y[: len(y) * 4 // 5]
    x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-6)
    return x.astype(np.float32), y.astype(np.int64)


def fit_loop(x: np.ndarray, y: np.ndarray, epochs: int, report: Report) -> float:
    """The training loop every side runs on every worker; returns the last epoch's loss."""
    torch.manual_seed(0)
    net = ray.train.torch.prepare_model(
        nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=LR)
    data = TensorDataset(torch.tensor(x), torch.tensor(y))
    loader = ray.train.torch.prepare_data_loader(
        DataLoader(data, batch_size=BATCH_SIZE, shuffle=True)
    )
    loss = float("nan")
    for epoch in range(epochs):
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
        for features, labels in loader:
            optimizer.zero_grad()
            batch_loss = nn.functional.cross_entropy(net(features), labels)
            batch_loss.backward()
            optimizer.step()
            loss = batch_loss.item()
        state = {"model": getattr(net, "module", net).state_dict(), "epoch": epoch}
        report({"loss": loss, "epoch": epoch}, state)
    return loss


# -- raypipe --------------------------------------------------------------------------------


@dsl.component(train=dsl.TorchDistributed(num_workers=WORKERS))
def train(x: np.ndarray, y: np.ndarray, epochs: int, model: Output[Model]) -> float:
    return fit_loop(x, y, epochs, lambda m, state: raypipe.train.report(m, checkpoint=state))


@dsl.pipeline(name="bench-train")
def train_pipeline(x: np.ndarray, y: np.ndarray, epochs: int) -> float:
    return train(x=x, y=y, epochs=epochs).outputs["Output"]


def run_raypipe(x: np.ndarray, y: np.ndarray, *, tracking: bool) -> tuple[float, float]:
    """The loss, and the seconds ``raypipe.run`` took beyond the step's attempt."""
    started = time.time()
    result = raypipe.run(
        train_pipeline, {"x": x, "y": y, "epochs": EPOCHS}, cache=False, tracking=tracking
    )
    took = time.time() - started
    if result.status != "SUCCEEDED":
        raise RuntimeError(f"the raypipe run failed: {result.error}")
    model = result.tasks["train"].outputs["model"]
    if not os.path.exists(os.path.join(model.uri, raypipe.train.STATE_FILE)):
        raise RuntimeError(f"no checkpoint in the model artifact {model.uri}")
    attempt = result.tasks["train"].attempts[-1]
    return float(result.output), took - (attempt.end_time - attempt.start_time).total_seconds()


# -- the same by hand -----------------------------------------------------------------------


def raw_report(metrics: Mapping[str, float], state: Mapping[str, Any]) -> None:
    """Ray Train's report; rank 0 also hands over the state dict as a checkpoint."""
    if ray.train.get_context().get_world_rank() != 0:
        ray.train.report(dict(metrics))
        return
    with tempfile.TemporaryDirectory(prefix="bench-checkpoint-") as folder:
        torch.save(dict(state), os.path.join(folder, "state.pt"))
        ray.train.report(dict(metrics), checkpoint=ray.train.Checkpoint.from_directory(folder))


def raw_loop(config: dict[str, Any]) -> float:
    return fit_loop(config["x"], config["y"], config["epochs"], raw_report)


def fit_trainer(x: np.ndarray, y: np.ndarray, storage: str) -> float:
    """Build and fit the TorchTrainer raypipe's step builds, with the same settings."""
    trainer = TorchTrainer(
        raw_loop,
        train_loop_config={"x": x, "y": y, "epochs": EPOCHS},
        scaling_config=ScalingConfig(num_workers=WORKERS, resources_per_worker={"CPU": 1.0}),
        torch_config=TorchConfig(backend="gloo"),
        run_config=RunConfig(
            name="train",
            storage_path=tempfile.mkdtemp(dir=storage),
            failure_config=FailureConfig(max_failures=0),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
    )
    result: Any = trainer.fit()  # Ray Train v2's Result
    if result.checkpoint is None:
        raise RuntimeError("the trainer reported no checkpoint")
    return float(result.return_value)


@ray.remote(num_cpus=0)  # like raypipe's step: the workers reserve the CPUs
def fit_in_task(x: np.ndarray, y: np.ndarray, storage: str) -> float:
    return fit_trainer(x, y, storage)


# -- timing ---------------------------------------------------------------------------------


def systems(x: np.ndarray, y: np.ndarray, storage: str) -> dict[str, Run]:
    def raw(fit: Callable[[], float]) -> Run:
        return lambda: (fit(), None)

    return {
        RAYPIPE: lambda: run_raypipe(x, y, tracking=False),
        RAW_TASK: raw(lambda: ray.get(fit_in_task.remote(x, y, storage))),
        DRIVER: raw(lambda: fit_trainer(x, y, storage)),
        RAYPIPE_TRACKED: lambda: run_raypipe(x, y, tracking=True),
    }


def measure(reps: int, warmup: int, *, verbose: bool = True) -> dict[str, list[float]]:
    """``warmup`` untimed rounds, then ``reps`` timed ones, in the orders of :data:`ORDERS`.

    Returns each system's times, and under :data:`OUTSIDE` the part of the untracked
    raypipe runs spent outside the step's attempt (planning, submitting, collecting). A
    tracked run is timed until ``raypipe.run`` returns, as in ``bench_tracking.py``; the
    benchmark then waits, untimed, until MLflow has it (``raypipe.tracking.flush``), so
    the background writer cannot slow the next system.
    """
    x, y = digits()
    storage = tempfile.mkdtemp(prefix="ray-train-", dir=prepare_environment())
    runs = systems(x, y, storage)
    losses: dict[str, float] = {}
    samples: dict[str, list[float]] = {name: [] for name in (*SYSTEMS, OUTSIDE)}
    for round_ in range(warmup + reps):
        order = [SYSTEMS[i] for i in ORDERS[max(round_ - warmup, 0) % len(ORDERS)]]
        timed: dict[str, float] = {}
        for name in order:
            time.sleep(SETTLE_S)
            gc.collect()
            start = time.perf_counter()
            losses[name], outside = runs[name]()
            timed[name] = time.perf_counter() - start
            if name == RAYPIPE and outside is not None:
                timed[OUTSIDE] = outside
            if name == RAYPIPE_TRACKED and not raypipe.tracking.flush(timeout=60):
                raise RuntimeError("MLflow did not receive the tracked run within 60 s")
        if len({round(loss, 4) for loss in losses.values()}) != 1:  # the same training
            raise RuntimeError(f"the four sides trained different models: {losses}")
        if round_ >= warmup:
            for name, seconds in timed.items():
                samples[name].append(seconds)
        if verbose:
            what = f"round {round_ + 1 - warmup}/{reps}" if round_ >= warmup else "warm-up"
            line = ", ".join(f"{name} {timed[name]:.2f} s" for name in (*SYSTEMS, OUTSIDE))
            print(f"[train] {what}: {line}", file=sys.stderr, flush=True)
    return samples


def comparison(
    name: str, description: str, samples: Mapping[str, list[float]], first: str, second: str
) -> Comparison:
    return Comparison(
        name=name,
        description=description,
        target=TARGET,
        reps=len(samples[first]),
        raypipe=Stats.of(samples[first]),
        raw=Stats.of(samples[second]),
        pair_ratios=[a / b for a, b in zip(samples[first], samples[second], strict=True)],
        labels=(first, second),
    )


def comparisons(samples: Mapping[str, list[float]]) -> list[Comparison]:
    workload = f"{EPOCHS} epochs of an MLP on the digits, {WORKERS} Ray Train workers"
    return [
        comparison(
            "train",
            f"{workload}: raypipe training step (tracking off) vs a raw Ray task fitting the "
            "same TorchTrainer",
            samples,
            RAYPIPE,
            RAW_TASK,
        ),
        comparison(
            "train-tracking",
            f"{workload}: raypipe training step with tracking on vs the raw Ray task",
            samples,
            RAYPIPE_TRACKED,
            RAW_TASK,
        ),
        comparison(
            "train-driver",
            f"{workload}: the raw Ray task vs trainer.fit() called in the driver",
            samples,
            RAW_TASK,
            DRIVER,
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=4, help="timed rounds (4: every order once)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument(
        "--poll", type=float, default=0.1, help="RAY_TRAIN_HEALTH_CHECK_INTERVAL_S (Ray: 2)"
    )
    parser.add_argument("--json", type=Path, help="also write the comparisons here as JSON")
    parser.add_argument("--quiet", action="store_true", help="no per-round progress")
    args = parser.parse_args()
    if args.reps < 1 or args.warmup < 0 or args.poll <= 0:
        parser.error("--reps must be at least 1, --warmup at least 0, --poll above 0")
    os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] = str(args.poll)  # before Ray starts
    prepare_environment()
    start_ray()
    samples = measure(args.reps, args.warmup, verbose=not args.quiet)
    results = comparisons(samples)
    print(f"\ntraining step vs TorchTrainer (Ray Train poll interval {args.poll} s)\n")
    print(format_table(results))
    core = results[0]
    print(
        f"\nraypipe / raw Ray task = {core.ratio:.2f}× (target ≤ {core.target:.1f}×: "
        f"{'met' if core.meets_target else 'MISSED'}); tracking on: {results[1].ratio:.2f}×; "
        f"raw task / driver: {results[2].ratio:.2f}×; raypipe outside the step: median "
        f"{statistics.median(samples[OUTSIDE]) * 1000:.0f} ms\n"
    )
    if args.json is not None:
        args.json.write_text(json.dumps([r.to_json() for r in results], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
