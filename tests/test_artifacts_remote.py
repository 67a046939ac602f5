"""File artifacts on a remote ``pyarrow.fs`` root: a real S3 endpoint (moto's server) on loopback.

Every byte goes over HTTP to the server: the Ray workers upload outputs and download inputs
with pyarrow's S3 client, and the test checks the bucket with boto3, a second client.

The credentials travel in the root URI (``s3://KEY:SECRET@bucket/...``), so the Ray workers
need no AWS environment variables, and the AWS SDK never asks the instance-metadata service.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer
from pyarrow import fs as pafs

import raypipe
from raypipe import dsl
from raypipe.dsl import Artifact, Dataset, Input, Model, Output
from raypipe.runtime.artifacts import ArtifactStore
from raypipe.runtime.result import ArtifactRecord

ACCESS_KEY = "raypipe-test-key"
SECRET_KEY = "raypipe-test-secret"
REGION = "us-east-1"
BUCKET = "raypipe-artifacts"

MODEL_FILES = {
    "config.json": json.dumps({"layers": 2, "hidden": 8}),
    "weights.bin": bytes(range(256)).hex(),
    "tokenizer/vocab.txt": "<pad>\n<unk>\nhello\nworld\n",
}


@dataclass(frozen=True)
class S3Server:
    endpoint: str  # host:port

    def root(self, prefix: str) -> str:
        """An artifact root under ``prefix`` that pyarrow opens over plain HTTP."""
        return (
            f"s3://{ACCESS_KEY}:{SECRET_KEY}@{BUCKET}/{prefix}"
            f"?endpoint_override={self.endpoint}&scheme=http&region={REGION}"
        )

    def keys(self, prefix: str) -> set[str]:
        """Every object key under ``prefix`` except pyarrow's empty directory markers."""
        client = boto3.client(
            "s3",
            endpoint_url=f"http://{self.endpoint}",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )
        keys: set[str] = set()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            keys.update(o["Key"] for o in page.get("Contents", []) if not o["Key"].endswith("/"))
        return keys

    def read(self, key: str) -> bytes:
        s3 = pafs.S3FileSystem(
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            region=REGION,
            scheme="http",
            endpoint_override=self.endpoint,
        )
        with s3.open_input_stream(f"{BUCKET}/{key}") as f:
            data: bytes = f.read()
        return data


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    """moto's S3 server on a free loopback port, with one empty bucket; stopped afterwards."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"{host}:{port}"
        boto3.client(
            "s3",
            endpoint_url=f"http://{endpoint}",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        ).create_bucket(Bucket=BUCKET)
        yield S3Server(endpoint=endpoint)
    finally:
        server.stop()


# Components (module level, as users write them) -------------------------------------------


@dsl.component
def produce(rows: int, data: Output[Dataset], model: Output[Model]) -> None:
    with open(data.path, "w") as f:
        f.writelines(f"{i},{i * i}\n" for i in range(rows))
    data.metadata["rows"] = rows
    for name, text in MODEL_FILES.items():
        target = os.path.join(model.path, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w") as f:
            f.write(text)
    model.metadata.update({"framework": "toy", "layers": [8, 8]})


@dsl.component
def consume(data: Input[Dataset], model: Input[Model]) -> dict:
    files = {}
    for dirpath, _, names in os.walk(model.path):
        for name in names:
            full = os.path.join(dirpath, name)
            with open(full) as f:
                files[os.path.relpath(full, model.path).replace(os.sep, "/")] = f.read()
    with open(data.path) as f:
        text = f.read()
    return {
        "data": text,
        "model_files": files,
        "data_metadata": data.metadata,
        "model_metadata": model.metadata,
        "data_uri": data.uri,
        "data_path": data.path,
    }


@dsl.component
def write_text(text: str, out: Output[Dataset]) -> None:
    with open(out.path, "w") as f:
        f.write(text)


@dsl.component
def concatenate(first: Input[Dataset], second: Input[Dataset]) -> str:
    with open(first.path) as f, open(second.path) as g:
        return f.read() + "+" + g.read()


@dsl.pipeline(name="remote-artifacts")
def remote_artifacts(rows: int = 4) -> dict:
    made = produce(rows=rows)
    return consume(data=made.outputs["data"], model=made.outputs["model"]).output


@dsl.pipeline(name="same-output-names")
def same_output_names() -> str:
    a = write_text(text="left")
    b = write_text(text="right")
    return concatenate(first=a.outputs["out"], second=b.outputs["out"]).output


@dsl.pipeline(name="model-out")
def model_out() -> Model:
    return produce(rows=1).outputs["model"]


# A pipeline on the S3 root -----------------------------------------------------------------


def test_pipeline_on_s3_root_uploads_outputs_and_downstream_reads_them(s3: S3Server) -> None:
    result = raypipe.run(remote_artifacts, {"rows": 4}, artifact_root=s3.root("pipeline"))

    assert result.status == "SUCCEEDED", result.error
    read = result.output
    assert read["data"] == "0,0\n1,1\n2,4\n3,9\n"
    assert read["model_files"] == MODEL_FILES
    assert read["data_metadata"] == {"rows": 4}
    assert read["model_metadata"] == {"framework": "toy", "layers": [8, 8]}
    assert read["data_uri"].startswith("s3://")
    assert not read["data_path"].startswith("s3://")  # the step read a local staged copy


def test_pipeline_on_s3_root_stores_objects_under_prefix_pipeline_run_task_output(
    s3: S3Server,
) -> None:
    result = raypipe.run(remote_artifacts, {"rows": 3}, artifact_root=s3.root("layout"))

    assert result.status == "SUCCEEDED", result.error
    base = f"layout/remote-artifacts/{result.run_id}/produce"
    # (besides: an attempt marker in .logs/ when the step ran for 0.2 s; see markers.py)
    assert {k for k in s3.keys(base) if "/.logs/" not in k} == {
        f"{base}/data",
        *(f"{base}/model/{name}" for name in MODEL_FILES),
    }
    assert s3.read(f"{base}/data") == b"0,0\n1,1\n2,4\n"
    for name, text in MODEL_FILES.items():
        assert s3.read(f"{base}/model/{name}") == text.encode()


def test_pipeline_on_s3_root_records_s3_uris_and_metadata_in_task_outputs(s3: S3Server) -> None:
    result = raypipe.run(remote_artifacts, {"rows": 2}, artifact_root=s3.root("records"))

    assert result.status == "SUCCEEDED", result.error
    outputs = result.tasks["produce"].outputs
    data, model = outputs["data"], outputs["model"]
    assert isinstance(data, ArtifactRecord) and isinstance(model, ArtifactRecord)
    assert (data.type, model.type) == ("Dataset", "Model")
    assert data.uri.startswith(f"s3://{BUCKET}/records/remote-artifacts/{result.run_id}/")
    assert model.uri.startswith(f"s3://{BUCKET}/records/remote-artifacts/{result.run_id}/")
    assert data.metadata == {"rows": 2}
    assert model.metadata == {"framework": "toy", "layers": [8, 8]}
    assert result.output["data_uri"] == data.uri  # the downstream saw the same URI


def test_artifact_uris_keep_the_endpoint_but_not_the_credentials(s3: S3Server) -> None:
    result = raypipe.run(remote_artifacts, {"rows": 1}, artifact_root=s3.root("secret"))

    assert result.status == "SUCCEEDED", result.error
    uri = result.tasks["produce"].outputs["model"].uri
    assert SECRET_KEY not in uri and ACCESS_KEY not in uri
    assert SECRET_KEY not in result.artifact_root and SECRET_KEY not in result.summary()
    path, _, query = uri.partition("?")
    assert path == f"s3://{BUCKET}/secret/remote-artifacts/{result.run_id}/produce/model"
    assert f"endpoint_override={s3.endpoint}" in query
    # The URI alone, plus credentials, opens the stored directory with pyarrow.
    filesystem, location = pafs.FileSystem.from_uri(
        uri.replace("s3://", f"s3://{ACCESS_KEY}:{SECRET_KEY}@", 1)
    )
    listed = filesystem.get_file_info(pafs.FileSelector(location, recursive=True))
    assert {i.path.removeprefix(location + "/") for i in listed if i.is_file} == set(MODEL_FILES)


def test_two_inputs_with_the_same_output_name_reach_the_step_apart(s3: S3Server) -> None:
    result = raypipe.run(same_output_names, artifact_root=s3.root("collide"))

    assert result.status == "SUCCEEDED", result.error
    assert result.output == "left+right"


def test_artifact_pipeline_output_on_s3_root_is_an_artifact_with_its_s3_uri(
    s3: S3Server,
) -> None:
    result = raypipe.run(model_out, artifact_root=s3.root("output"))

    assert result.status == "SUCCEEDED", result.error
    model = result.output
    assert isinstance(model, Model)
    assert model.uri == result.tasks["produce"].outputs["model"].uri
    assert model.uri.startswith(f"s3://{BUCKET}/output/model-out/")
    assert model.metadata == {"framework": "toy", "layers": [8, 8]}


# ArtifactStore alone on the S3 root --------------------------------------------------------


def test_store_on_s3_root_is_remote_and_addresses_outputs_under_the_root(s3: S3Server) -> None:
    store = ArtifactStore(s3.root("unit/uris"))

    assert not store.is_local
    uri = store.output_uri("pipe", "run1", "task", "out")
    assert uri.partition("?")[0] == f"s3://{BUCKET}/unit/uris/pipe/run1/task/out"


def test_store_round_trips_a_file_through_s3(s3: S3Server, tmp_path: Path) -> None:
    store = ArtifactStore(s3.root("unit/file"))
    uri = store.output_uri("pipe", "run1", "writer", "table")

    output = store.new_output(Dataset, "table", uri, tmp_path / "writer")
    assert output.uri == uri and output.path.startswith(str(tmp_path / "writer"))
    Path(output.path).write_bytes(b"a,b\n1,2\n")
    output.metadata["rows"] = 1
    record = store.commit_output(output)

    content = b"a,b\n1,2\n"
    assert record == ArtifactRecord(
        name="table",
        type="Dataset",
        uri=uri,
        metadata={"rows": 1},
        digest=hashlib.sha256(content).hexdigest(),  # the content's, like sha256sum's
        size=len(content),
    )
    assert s3.read("unit/file/pipe/run1/writer/table") == b"a,b\n1,2\n"

    opened = store.open_input(record, "Dataset", tmp_path / "reader")
    assert isinstance(opened, Dataset)
    assert (opened.name, opened.uri, opened.metadata) == ("table", uri, {"rows": 1})
    assert opened.path.startswith(str(tmp_path / "reader"))
    assert Path(opened.path).read_bytes() == b"a,b\n1,2\n"


def test_store_round_trips_a_directory_tree_through_s3(s3: S3Server, tmp_path: Path) -> None:
    store = ArtifactStore(s3.root("unit/dir"))
    uri = store.output_uri("pipe", "run1", "trainer", "model")

    output = store.new_output(Model, "model", uri, tmp_path / "trainer")
    for name, text in MODEL_FILES.items():
        Path(output.path, name).parent.mkdir(parents=True, exist_ok=True)
        Path(output.path, name).write_text(text)
    record = store.commit_output(output)

    base = "unit/dir/pipe/run1/trainer/model"
    assert s3.keys(base) == {f"{base}/{name}" for name in MODEL_FILES}

    # Declared as a plain Artifact, the input takes the stored class.
    opened: Artifact = store.open_input(record, "Artifact", tmp_path / "reader")
    assert isinstance(opened, Model)
    assert {
        str(p.relative_to(opened.path)): p.read_text()
        for p in Path(opened.path).rglob("*")
        if p.is_file()
    } == MODEL_FILES


def test_store_does_not_upload_an_output_the_step_never_wrote(s3: S3Server, tmp_path: Path) -> None:
    store = ArtifactStore(s3.root("unit/unwritten"))
    uri = store.output_uri("pipe", "run1", "idle", "out")

    record = store.commit_output(store.new_output(Dataset, "out", uri, tmp_path / "idle"))

    assert record.uri == uri
    assert s3.keys("unit/unwritten") == set()
    opened = store.open_input(record, "Dataset", tmp_path / "reader")
    assert not os.path.exists(opened.path)


def test_store_stages_same_named_inputs_from_different_tasks_apart(
    s3: S3Server, tmp_path: Path
) -> None:
    store = ArtifactStore(s3.root("unit/apart"))
    records = []
    for task, text in (("left", "L"), ("right", "R")):
        output = store.new_output(
            Dataset, "out", store.output_uri("p", "r", task, "out"), tmp_path / task
        )
        Path(output.path).write_text(text)
        records.append(store.commit_output(output))

    staging = tmp_path / "reader"
    opened = [store.open_input(r, "Dataset", staging) for r in records]

    assert opened[0].path != opened[1].path
    assert [Path(a.path).read_text() for a in opened] == ["L", "R"]


def test_artifact_record_from_s3_root_has_no_local_path(s3: S3Server) -> None:
    store = ArtifactStore(s3.root("unit/record"))
    uri = store.output_uri("p", "r", "t", "m")
    record = ArtifactRecord(name="m", type="Model", uri=uri, metadata={"k": 1})

    artifact: Any = store.artifact_from_record(record)

    assert isinstance(artifact, Model)
    assert (artifact.uri, artifact.metadata, artifact.path) == (uri, {"k": 1}, uri)
