"""Distributed PyTorch training steps: a real Ray Train ``TorchTrainer`` with 2 workers.

The runs use this session's 2-CPU Ray: each training worker takes one CPU and the step
that drives them takes none.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

import raypipe
import raypipe.tracking
from raypipe import dsl
from raypipe.dsl import Input, Model, Output
from raypipe.runtime.feasibility import ResourceRequest, find_problem
from raypipe.train.step import scaling_config

torch = pytest.importorskip("torch", reason="training steps need raypipe[torch]")


@dsl.component
def make_data(rows: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 4)).astype("float32")
    return np.concatenate([x, x @ np.array([[1.0], [-2.0], [0.5], [3.0]], "float32")], axis=1)


@dsl.component(train=dsl.TorchDistributed(num_workers=2, max_failures=1))
def fit(data: np.ndarray, epochs: int, crash_marker: str, model: Output[Model]) -> float:
    import os
    import signal

    import torch

    import raypipe.train

    rank = raypipe.train.context().world_rank
    net = raypipe.train.prepare_model(torch.nn.Linear(4, 1))
    optimiser = torch.optim.SGD(net.parameters(), lr=0.05)
    start = 0
    state = raypipe.train.load_state()
    if state is not None:  # restarted after a worker died: go on from the checkpoint
        net.module.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        start = state["epoch"] + 1
    shard = data[rank :: raypipe.train.context().world_size]
    x, y = torch.tensor(shard[:, :4]), torch.tensor(shard[:, 4:])
    loss = torch.tensor(0.0)
    for epoch in range(start, epochs):
        loss = ((net(x) - y) ** 2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        checkpoint = {
            "model": net.module.state_dict(),
            "optimiser": optimiser.state_dict(),
            "epoch": epoch,
        }
        raypipe.train.report({"loss": loss.item(), "epoch": epoch}, checkpoint=checkpoint)
        if crash_marker and epoch == 2 and rank == 1 and not os.path.exists(crash_marker):
            open(crash_marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)  # a training worker dies mid-training
    return float(loss.item()) if start < epochs else -1.0


@dsl.component
def evaluate(data: np.ndarray, model: Input[Model]) -> float:
    import os

    import torch

    import raypipe.train

    state = torch.load(os.path.join(model.path, raypipe.train.STATE_FILE), weights_only=False)
    net = torch.nn.Linear(4, 1)
    net.load_state_dict(state["model"])
    x, y = torch.tensor(data[:, :4]), torch.tensor(data[:, 4:])
    return float(((net(x) - y) ** 2).mean())


@dsl.pipeline(name="train-linear")
def train_linear(epochs: int = 6, crash_marker: str = "") -> float:
    data = make_data(rows=256)
    trained = fit(data=data.output, epochs=epochs, crash_marker=crash_marker)
    return evaluate(data=data.output, model=trained.outputs["model"]).output


def _loss_curve(run_id: str, task: str) -> list[tuple[int, float]]:
    assert raypipe.tracking.flush(timeout=60)
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    (found,) = client.search_runs(
        [client.get_experiment_by_name("train-linear").experiment_id],
        filter_string=f"tags.`raypipe.run_id` = '{run_id}' and tags.`raypipe.task` = '{task}'",
    )
    return [(m.step, m.value) for m in client.get_metric_history(found.info.run_id, "loss")]


def test_a_training_step_trains_on_two_workers_and_hands_over_its_model() -> None:
    result = raypipe.run(train_linear, {"epochs": 6}, tracking=True)

    assert result.ok, result.error
    final_loss = result.tasks["fit"].outputs["Output"]
    assert 0 < final_loss < 10
    assert result.output == pytest.approx(final_loss, rel=0.5)  # the model the next step loaded
    curve = _loss_curve(result.run_id, "fit")
    assert [step for step, _ in curve] == list(range(6))  # one MLflow step per epoch
    assert curve[-1][1] < curve[0][1]


def test_a_killed_worker_is_restarted_from_the_last_checkpoint(tmp_path: Path) -> None:
    marker = tmp_path / "crashed"

    result = raypipe.run(train_linear, {"epochs": 6, "crash_marker": str(marker)}, tracking=True)

    assert marker.exists(), "the worker was not killed"
    assert result.ok, result.error
    assert result.tasks["fit"].outputs["Output"] > 0  # restarted at epoch 3, not from zero
    curve = _loss_curve(result.run_id, "fit")
    # The history survived the restart. The curve grew while the step trained, so epochs
    # redone after the restart (those after the last checkpoint) are in it twice.
    assert sorted({step for step, _ in curve}) == list(range(6))


@dsl.component(train=dsl.TorchDistributed(num_workers=2))
def paced_fit(epochs: int, release: str, model: Output[Model]) -> int:
    import os
    import time

    import raypipe.train

    for epoch in range(epochs):
        raypipe.train.report({"loss": 1.0 / (epoch + 1), "epoch": epoch})  # no checkpoint
    while not os.path.exists(release):  # the test lets the step end once it saw the curve
        time.sleep(0.05)
    if raypipe.train.context().world_rank == 0:  # no checkpoint: this is the model
        with open(os.path.join(model.path, "weights.txt"), "w") as f:
            f.write("0.5 0.25")
        model.metadata["framework"] = "text"
    return epochs


@dsl.component
def read_saved(model: Input[Model]) -> str:
    import os

    with open(os.path.join(model.path, "weights.txt")) as f:
        return f"{model.metadata['framework']}: {f.read()}"


@dsl.pipeline(name="paced-training")
def paced_training(epochs: int, release: str) -> str:
    return read_saved(model=paced_fit(epochs=epochs, release=release).outputs["model"]).output


def test_the_learning_curve_reaches_mlflow_while_the_step_trains_and_rank_0s_files_are_its_model(
    tmp_path: Path,
) -> None:
    """One training run for two behaviours (a Ray Train start costs 10-20 s): the curve is
    in MLflow while the step still trains, and a step that reported no checkpoint hands
    over what rank 0 wrote to ``model.path``, with the metadata it set."""
    release = tmp_path / "release"
    handle = raypipe.submit(paced_training, {"epochs": 3, "release": str(release)}, tracking=True)
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    seen: list[tuple[int, float]] = []
    deadline = time.monotonic() + 120
    try:
        while len(seen) < 3 and time.monotonic() < deadline and not handle.done():
            time.sleep(0.2)
            experiment = client.get_experiment_by_name("paced-training")
            if experiment is None:
                continue
            found = client.search_runs(
                [experiment.experiment_id],
                filter_string=f"tags.`raypipe.run_id` = '{handle.run_id}' "
                "and tags.`raypipe.task` = 'paced-fit'",
            )
            if found:
                history = client.get_metric_history(found[0].info.run_id, "loss")
                seen = sorted((m.step, m.value) for m in history)
        assert not handle.done(), "the step ended before the test let it"
        assert seen == [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3))]
        (step_run,) = found
        assert step_run.info.status == "RUNNING"
    finally:
        release.touch()
    result = handle.wait(timeout=120)

    assert result.ok, result.error
    assert result.output == "text: 0.5 0.25"  # what rank 0 wrote, read by the next step
    assert result.tasks["paced-fit"].outputs["model"].metadata == {"framework": "text"}
    assert raypipe.tracking.flush(timeout=60)
    step_run = client.get_run(step_run.info.run_id)
    assert step_run.info.status == "FINISHED"
    assert step_run.data.tags["raypipe.state"] == "SUCCEEDED"
    history = client.get_metric_history(step_run.info.run_id, "loss")
    assert sorted(m.step for m in history) == [0, 1, 2]  # logged once, not again at the end


def test_unwrap_gives_the_model_inside_a_data_parallel_wrapper() -> None:
    plain = torch.nn.Linear(2, 1)
    assert raypipe.train.unwrap(plain) is plain  # one worker: prepare_model does not wrap
    assert raypipe.train.unwrap(torch.nn.DataParallel(plain)) is plain


def test_training_options_become_ray_train_options() -> None:
    options = dsl.TorchDistributed(
        num_workers=4, use_gpu=True, accelerator="H100", resources_per_worker={"CPU": 8}
    )
    assert scaling_config(options) == {
        "num_workers": 4,
        "use_gpu": True,
        "resources_per_worker": {"CPU": 8.0, "GPU": 1.0},
        "accelerator_type": "H100",
    }
    assert scaling_config(options, {"raypipe.io/group": "h100"})["label_selector"] == {
        "raypipe.io/group": "h100"
    }
    assert options.resolved_backend() == "nccl"
    assert dsl.TorchDistributed(num_workers=2).resolved_backend() == "gloo"
    assert fit.options.num_cpus == 0.0  # the step only drives its workers

    spec = raypipe.compile(train_linear)
    assert raypipe.spec.loads(raypipe.spec.dumps(spec)) == spec
    assert spec.root.dag.tasks["fit"].options.train == fit.options.train


def test_a_training_step_that_cannot_fit_fails_before_anything_runs() -> None:
    cpus = ResourceRequest.for_training(dsl.TorchDistributed(num_workers=3))
    assert find_problem(cpus, [{"CPU": 2.0}]) == (
        "train",
        "needs 3 training workers of 1 CPU each at once; the cluster holds 2",
    )
    gpus = ResourceRequest.for_training(dsl.TorchDistributed(num_workers=1, use_gpu=True))
    assert find_problem(gpus, [{"CPU": 2.0}]) == ("num_gpus", "needs 1 GPU; no node has a GPU")

    @dsl.component(train=dsl.TorchDistributed(num_workers=3))
    def too_big(x: int) -> int:
        return x

    @dsl.pipeline(name="too-big")
    def too_big_pipeline() -> int:
        return too_big(x=1).output

    with pytest.raises(raypipe.InfeasibleResourcesError, match="3 training workers"):
        raypipe.run(too_big_pipeline, tracking=False)


def test_mistakes_in_a_training_component_name_it() -> None:
    with pytest.raises(raypipe.ComponentDefinitionError, match="at most one Output"):

        @dsl.component(train=dsl.TorchDistributed())
        def two_models(x: int, a: Output[Model], b: Output[Model]) -> None:
            pass

    with pytest.raises(RuntimeError, match="inside the function of a training step"):
        raypipe.train.report({"loss": 1.0})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU here; runs where torch sees one")
def test_a_training_step_on_gpus() -> None:
    @dsl.component(train=dsl.TorchDistributed(num_workers=1, use_gpu=True))
    def on_gpu() -> str:
        import torch

        return str(torch.ones(1).cuda().device)

    @dsl.pipeline(name="gpu")
    def gpu_pipeline() -> str:
        return on_gpu().output

    result = raypipe.run(gpu_pipeline, tracking=False)
    assert result.ok and result.output.startswith("cuda")


def test_raypipe_imports_and_compiles_training_steps_without_torch(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None  # importing torch now fails
        import raypipe, raypipe.train
        from raypipe import dsl

        @dsl.component(train=dsl.TorchDistributed(num_workers=2))
        def fit(x: int) -> int:
            return x

        @dsl.pipeline(name="p")
        def p() -> int:
            return fit(x=1).output

        print(raypipe.compile(p).root.dag.tasks["fit"].options.train.num_workers)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2"
