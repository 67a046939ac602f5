"""Parsed pipeline specs kept by version and digest: parsed once, and never a way around
the store's checks (namespace, deleted versions)."""

from __future__ import annotations

import pytest

import raypipe
from raypipe.api.spec_cache import SpecCache
from raypipe.api.store import NotFound, Store
from raypipe.errors import SpecLoadError
from tests.pipelines import addition
from tests.service.test_store import NS, OTHER


def test_a_versions_spec_is_parsed_once_and_its_deletion_still_refuses_runs(
    store: Store,
) -> None:
    text = raypipe.compile(addition).model_dump_json()
    pipeline = store.create_pipeline(NS, "addition")
    version = store.create_pipeline_version(NS, pipeline.pipeline_id, "v1", text)
    specs = SpecCache(capacity=4)
    spec = specs.of_version(store, NS, version.pipeline_version_id)
    assert spec.name == "addition"
    assert specs.of_version(store, NS, version.pipeline_version_id) is spec
    assert specs.of_digest(version.digest, "not read again", source="x") is spec
    with pytest.raises(NotFound):
        specs.of_version(store, OTHER, version.pipeline_version_id)
    store.delete_pipeline_version(NS, version.pipeline_version_id)
    assert specs.of_version(store, NS, version.pipeline_version_id) is spec  # kept...
    with pytest.raises(NotFound):  # ...but the store creates no run of it
        store.create_run(NS, display_name="r", pipeline_version_id=version.pipeline_version_id)


def test_a_bad_spec_is_refused_naming_its_source_and_the_cache_stays_bounded() -> None:
    specs = SpecCache(capacity=2)
    with pytest.raises(SpecLoadError, match="run 42"):
        specs.of_digest("bad", '{"name": 1}', source="run 42")
    text = raypipe.compile(addition).model_dump_json()
    first = specs.of_digest("d1", text, source="a")
    specs.of_digest("d2", text, source="b")
    specs.of_digest("d3", text, source="c")  # d1, the least recently used, goes
    assert specs.of_digest("d1", text, source="a") is not first
