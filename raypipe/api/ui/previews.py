"""Artifact previews for the step panel, one shape per kind of artifact.

``Markdown`` is rendered here to HTML with raw HTML disabled (so a document cannot inject
markup into the page); ``HTML`` is returned as text for a sandboxed ``<iframe srcdoc>``
(no scripts, no same-origin access); ``Metrics`` and ``ClassificationMetrics`` come from
the artifact's metadata (KFP's layout); a CSV or Parquet dataset gives its first rows;
other small text files their beginning.

Example:
    >>> preview_of("Markdown", b"# Report", {}).html         # doctest: +SKIP
    '<h1>Report</h1>\\n'
"""

from __future__ import annotations

import csv
import io
from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = ["MAX_PREVIEW_BYTES", "Preview", "preview_of"]

MAX_PREVIEW_BYTES = 64 * 1024 * 1024  # larger files are only downloaded
PREVIEW_ROWS = 20
_TEXT_CHARS = 20_000

PreviewKind = Literal["markdown", "html", "metrics", "classification", "table", "text", "none"]


class Preview(BaseModel):
    """What the page draws for one artifact; the fields used depend on ``kind``."""

    kind: PreviewKind
    html: str | None = None  # markdown (rendered), html (the document, for srcdoc)
    text: str | None = None
    columns: list[str] = Field(default_factory=list)  # table, metrics
    rows: list[list[Any]] = Field(default_factory=list)
    total_rows: int | None = None
    labels: list[str] = Field(default_factory=list)  # classification: the classes
    matrix: list[list[int]] = Field(default_factory=list)  # actual x predicted
    roc: list[dict[str, float]] = Field(default_factory=list)  # fpr, tpr, threshold
    note: str | None = None  # why nothing is shown


def preview_of(artifact_type: str | None, data: bytes | None, metadata: dict[str, Any]) -> Preview:
    """The preview of one artifact: its type, content (None for a directory) and metadata."""
    kind = (artifact_type or "").rpartition(".")[2]
    if kind == "Metrics":
        rows = [[k, v] for k, v in metadata.items() if isinstance(v, (int, float))]
        return Preview(kind="metrics", columns=["metric", "value"], rows=rows)
    if kind == "ClassificationMetrics":
        return _classification(metadata)
    if data is None:
        return Preview(kind="none", note="a directory: download its files from the run")
    if kind == "Markdown":
        from markdown_it import MarkdownIt

        rendered = MarkdownIt("commonmark", {"html": False}).enable("table").render(_text(data))
        return Preview(kind="markdown", html=rendered)
    if kind == "HTML":
        return Preview(kind="html", html=_text(data))
    if data[:4] == b"PAR1":
        return _parquet(data)
    text = _decoded(data)
    if text is None:
        return Preview(kind="none", note=f"binary content ({len(data)} bytes)")
    if _looks_like_csv(text):
        return _csv(text)
    return Preview(kind="text", text=text[:_TEXT_CHARS])


def _classification(metadata: dict[str, Any]) -> Preview:
    matrix = metadata.get("confusionMatrix") or {}
    labels = [str(s.get("displayName", "")) for s in matrix.get("annotationSpecs", [])]
    rows = [[int(x) for x in r.get("row", [])] for r in matrix.get("rows", [])]
    roc = [
        {
            "fpr": float(p.get("falsePositiveRate", 0.0)),
            "tpr": float(p.get("recall", 0.0)),
            "threshold": float(p.get("confidenceThreshold", 0.0)),
        }
        for p in metadata.get("confidenceMetrics", [])
    ]
    return Preview(kind="classification", labels=labels, matrix=rows, roc=roc)


def _parquet(data: bytes) -> Preview:
    import pyarrow.parquet as pq

    file = pq.ParquetFile(io.BytesIO(data))
    total = file.metadata.num_rows
    batch = next(file.iter_batches(batch_size=PREVIEW_ROWS), None)
    columns = [str(n) for n in file.schema_arrow.names]
    rows: list[list[Any]] = []
    if batch is not None:
        listed = batch.to_pylist()
        rows = [[_cell(r.get(c)) for c in columns] for r in listed]
    return Preview(kind="table", columns=columns, rows=rows, total_rows=total)


def _csv(text: str) -> Preview:
    lines = text.splitlines()
    reader = csv.reader(lines[: PREVIEW_ROWS + 1])
    header, *rows = list(reader)
    return Preview(kind="table", columns=header, rows=rows, total_rows=max(len(lines) - 1, 0))


def _looks_like_csv(text: str) -> bool:
    lines = [line for line in text.splitlines()[:5] if line.strip()]
    if len(lines) < 2:
        return False
    counts = {line.count(",") for line in lines}
    return len(counts) == 1 and counts.pop() > 0


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _decoded(data: bytes) -> str | None:
    head = data[: _TEXT_CHARS * 4]
    if b"\0" in head[:8192]:  # text files have no NUL bytes
        return None
    return head.decode("utf-8", errors="replace")


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")
