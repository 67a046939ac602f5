"""Pipelines and their versions in the store; a version holds a compiled IR as JSON text.

Example:
    >>> pipeline = store.create_pipeline("team-a", "churn")
    >>> version = store.create_pipeline_version(
    ...     "team-a", pipeline.pipeline_id, "v1", spec.model_dump_json())
    >>> version.digest == hashlib.sha256(version.pipeline_spec.encode()).hexdigest()
    True
"""

from __future__ import annotations

from sqlalchemy import Select, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import defer

from raypipe.api.store.base import (
    StoreBase,
    check_name,
    check_namespace,
    new_id,
    spec_text,
    utc_now,
)
from raypipe.api.store.errors import AlreadyExists, Conflict, NotFound
from raypipe.api.store.filters import apply_list_filter, filter_params, scope
from raypipe.api.store.models import PipelineRow, PipelineVersionRow
from raypipe.api.store.paging import DEFAULT_PAGE_SIZE, fetch_page
from raypipe.api.store.records import ListFilter, Page, Pipeline, PipelineVersion, SortOrder

__all__ = ["PipelineStore", "pipeline_record", "pipeline_version_record"]


def pipeline_record(row: PipelineRow) -> Pipeline:
    """The record of a pipeline row."""
    return Pipeline(
        pipeline_id=row.id,
        namespace=row.namespace,
        display_name=row.display_name,
        description=row.description,
        created_at=row.created_at,
    )


def pipeline_version_record(
    row: PipelineVersionRow, *, include_spec: bool = True
) -> PipelineVersion:
    """The record of a pipeline version row (``pipeline_spec`` only if ``include_spec``)."""
    return PipelineVersion(
        pipeline_version_id=row.id,
        pipeline_id=row.pipeline_id,
        namespace=row.namespace,
        display_name=row.display_name,
        description=row.description,
        created_at=row.created_at,
        pipeline_spec=row.pipeline_spec if include_spec else None,
        digest=row.digest,
    )


class PipelineStore(StoreBase):
    """The pipeline and pipeline version methods of ``Store``."""

    def create_pipeline(
        self, namespace: str, display_name: str, *, description: str = ""
    ) -> Pipeline:
        """Create a pipeline (no version yet); its display name is unique in the namespace.

        Raises:
            AlreadyExists: the namespace has a pipeline of that name.
        """
        check_namespace(namespace)
        check_name("pipeline", display_name)
        row = PipelineRow(
            id=new_id(),
            namespace=namespace,
            display_name=display_name,
            description=description,
            created_at=utc_now(),
        )
        try:
            with self._write() as session:
                session.add(row)
                session.flush()
                return pipeline_record(row)
        except IntegrityError as exc:
            raise AlreadyExists("pipeline", repr(display_name)) from exc

    def get_pipeline(self, namespace: str, pipeline_id: str) -> Pipeline:
        """The pipeline with this id.

        Raises:
            NotFound: no such pipeline in the namespace.
        """
        with self._read() as session:
            return pipeline_record(
                self._get(session, PipelineRow, namespace, pipeline_id, "pipeline")
            )

    def get_pipeline_by_name(self, namespace: str, display_name: str) -> Pipeline:
        """The pipeline with this display name.

        Raises:
            NotFound: no such pipeline in the namespace.
        """
        with self._read() as session:
            row = session.scalars(
                select(PipelineRow).where(
                    PipelineRow.namespace == namespace, PipelineRow.display_name == display_name
                )
            ).first()
            if row is None:
                raise NotFound("pipeline", repr(display_name))
            return pipeline_record(row)

    def list_pipelines(
        self,
        namespace: str,
        filter: ListFilter | None = None,
        *,
        sort: SortOrder = "-created_at",
        page_size: int = DEFAULT_PAGE_SIZE,
        page_token: str | None = None,
    ) -> Page[Pipeline]:
        """One page of the namespace's pipelines (newest first by default)."""
        filter = filter or ListFilter()
        stmt: Select[PipelineRow] = select(PipelineRow).where(PipelineRow.namespace == namespace)
        stmt = apply_list_filter(stmt, PipelineRow, filter)
        with self._read() as session:
            rows, token = fetch_page(
                session,
                stmt,
                PipelineRow,
                sort=sort,
                page_size=page_size,
                page_token=page_token,
                params=filter_params(filter),
                scope=scope("pipelines", namespace, filter),
            )
            return Page(items=[pipeline_record(r) for r in rows], next_page_token=token)

    def delete_pipeline(self, namespace: str, pipeline_id: str, *, cascade: bool = False) -> None:
        """Delete a pipeline. Without ``cascade`` it must have no versions; with it, its
        versions go too. Runs keep their IR snapshot (their version id becomes ``None``).

        Raises:
            NotFound: no such pipeline in the namespace.
            Conflict: the pipeline has versions and ``cascade`` is false.
        """
        with self._write() as session:
            row = self._get(
                session, PipelineRow, namespace, pipeline_id, "pipeline", for_update=True
            )
            has_versions = session.scalar(
                select(exists().where(PipelineVersionRow.pipeline_id == pipeline_id))
            )
            if has_versions and not cascade:
                raise Conflict(
                    "pipeline", pipeline_id, "has versions; delete them first or pass cascade=True"
                )
            session.delete(row)  # versions go by ON DELETE CASCADE

    def create_pipeline_version(
        self,
        namespace: str,
        pipeline_id: str,
        display_name: str,
        pipeline_spec: str,
        *,
        description: str = "",
    ) -> PipelineVersion:
        """Add a version to a pipeline: the compiled IR as JSON text (kept as given, e.g.
        ``PipelineSpec.model_dump_json()``) and its sha256 digest.

        Raises:
            NotFound: no such pipeline in the namespace.
            AlreadyExists: the pipeline has a version of that name.
            InvalidArgument: ``pipeline_spec`` is not a JSON object.
        """
        check_name("pipeline_version", display_name)
        text, digest = spec_text("pipeline_version", pipeline_spec)
        try:
            with self._write() as session:
                self._get(session, PipelineRow, namespace, pipeline_id, "pipeline", for_update=True)
                row = PipelineVersionRow(
                    id=new_id(),
                    pipeline_id=pipeline_id,
                    namespace=namespace,
                    display_name=display_name,
                    description=description,
                    created_at=utc_now(),
                    pipeline_spec=text,
                    digest=digest,
                )
                session.add(row)
                session.flush()
                return pipeline_version_record(row)
        except IntegrityError as exc:
            raise AlreadyExists("pipeline_version", repr(display_name)) from exc

    def get_pipeline_version(self, namespace: str, pipeline_version_id: str) -> PipelineVersion:
        """The pipeline version with this id, with its IR.

        Raises:
            NotFound: no such version in the namespace.
        """
        with self._read() as session:
            row = self._get(
                session, PipelineVersionRow, namespace, pipeline_version_id, "pipeline_version"
            )
            return pipeline_version_record(row)

    def latest_pipeline_version(self, namespace: str, pipeline_id: str) -> PipelineVersion:
        """A pipeline's newest version (KFP's default version), with its IR.

        Raises:
            NotFound: no such pipeline in the namespace, or it has no version.
        """
        with self._read() as session:
            self._get(session, PipelineRow, namespace, pipeline_id, "pipeline")
            row = session.scalars(
                select(PipelineVersionRow)
                .where(PipelineVersionRow.pipeline_id == pipeline_id)
                .order_by(PipelineVersionRow.created_at.desc(), PipelineVersionRow.id.desc())
                .limit(1)
            ).first()
            if row is None:
                raise NotFound("pipeline_version", f"of pipeline {pipeline_id}")
            return pipeline_version_record(row)

    def list_pipeline_versions(
        self,
        namespace: str,
        pipeline_id: str,
        filter: ListFilter | None = None,
        *,
        sort: SortOrder = "-created_at",
        page_size: int = DEFAULT_PAGE_SIZE,
        page_token: str | None = None,
        include_spec: bool = False,
    ) -> Page[PipelineVersion]:
        """One page of a pipeline's versions (newest first by default), without their IR
        unless ``include_spec``.

        Raises:
            NotFound: no such pipeline in the namespace.
        """
        filter = filter or ListFilter()
        stmt: Select[PipelineVersionRow] = select(PipelineVersionRow).where(
            PipelineVersionRow.pipeline_id == pipeline_id
        )
        if not include_spec:
            stmt = stmt.options(defer(PipelineVersionRow.pipeline_spec, raiseload=True))
        stmt = apply_list_filter(stmt, PipelineVersionRow, filter)
        with self._read() as session:
            self._get(session, PipelineRow, namespace, pipeline_id, "pipeline")
            rows, token = fetch_page(
                session,
                stmt,
                PipelineVersionRow,
                sort=sort,
                page_size=page_size,
                page_token=page_token,
                params=filter_params(filter),
                scope=scope("pipeline_versions", namespace, filter, parent=pipeline_id),
            )
            items = [pipeline_version_record(r, include_spec=include_spec) for r in rows]
            return Page(items=items, next_page_token=token)

    def delete_pipeline_version(self, namespace: str, pipeline_version_id: str) -> None:
        """Delete a pipeline version. Runs and recurring runs made from it keep their IR
        snapshot; their version id becomes ``None``.

        Raises:
            NotFound: no such version in the namespace.
        """
        with self._write() as session:
            row = self._get(
                session, PipelineVersionRow, namespace, pipeline_version_id, "pipeline_version"
            )
            session.delete(row)
