"""Replay: one step of a past run, again, in this process, with its recorded inputs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import raypipe
from raypipe import dsl
from raypipe.dsl import Dataset, Input, Output
from raypipe.replaying import ReplayError
from raypipe.tracking.lineage import LineageWriter


@dsl.component(persist="sync")
def make(n: int, out: Output[Dataset]) -> np.ndarray:
    Path(out.path).write_text("hello")
    return np.arange(n)


@dsl.component(persist="none")
def unstored(n: int) -> np.ndarray:
    return np.ones(n)


@dsl.component
def combine(values: np.ndarray, data: Input[Dataset], scale: float, note: Output[Dataset]) -> float:
    import os

    Path(note.path).write_text(f"{values.sum()} {Path(data.path).read_text()} {os.getpid()}")
    return float(values.sum()) * scale


@dsl.pipeline(name="replayable")
def replayable(n: int = 4, scale: float = 2.0) -> float:
    made = make(n=n)
    combined = combine(values=made.outputs["Output"], data=made.outputs["out"], scale=scale)
    combine(values=unstored(n=n).output, data=made.outputs["out"], scale=scale)
    return combined.outputs["Output"]


def test_a_step_replays_here_with_the_inputs_it_had(tmp_path: Path) -> None:
    root = str(tmp_path / "lineage")
    result = raypipe.run(replayable, tracking=False, observers=[LineageWriter(root)])
    assert result.ok and result.output == 12.0
    replayed = raypipe.replay(result.run_id, "combine", lineage_root=root)
    assert replayed.value == 12.0
    assert list(replayed.inputs["values"]) == [0, 1, 2, 3]
    assert replayed.inputs["scale"] == 2.0
    note = replayed.outputs["note"]
    assert Path(note.path).read_text() == f"6 hello {os.getpid()}"  # it ran in this process
    assert not note.path.startswith(str(result.artifact_root))  # never over the run's own

    again = raypipe.replay(result.run_id, "combine", inputs={"scale": 10.0}, lineage_root=root)
    assert again.value == 60.0


def test_inputs_that_were_not_stored_are_named(tmp_path: Path) -> None:
    root = str(tmp_path / "lineage")
    result = raypipe.run(replayable, tracking=False, observers=[LineageWriter(root)])
    with pytest.raises(ReplayError, match=r"replayable\.combine-2: .* not stored.*: values") as e:
        raypipe.replay(result.run_id, "combine-2", lineage_root=root)
    assert e.value.missing == ["values"]
    given = raypipe.replay(
        result.run_id, "combine-2", inputs={"values": np.ones(2)}, lineage_root=root
    )
    assert given.value == 4.0


def test_replaying_what_is_not_a_step_is_an_error(tmp_path: Path) -> None:
    root = str(tmp_path / "lineage")
    result = raypipe.run(replayable, tracking=False, observers=[LineageWriter(root)])
    with pytest.raises(ReplayError, match="no task 'nope'"):
        raypipe.replay(result.run_id, "nope", lineage_root=root)


def test_the_command_line_replays_a_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from raypipe.cli import main

    root = tmp_path / "lineage"
    result = raypipe.run(replayable, tracking=False, observers=[LineageWriter(str(root))])
    monkeypatch.setenv("RAYPIPE_LINEAGE_ROOT", str(root))
    assert main(["replay", result.run_id, "combine"]) == 0
    out = capsys.readouterr().out
    assert "combine of run" in out and "returned: 12.0" in out and "output note:" in out
    assert main(["replay", result.run_id, "nope"]) == 2
