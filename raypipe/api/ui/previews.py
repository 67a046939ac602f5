"""Artifact previews for the step panel, one shape per kind of artifact, each reading only
the part of the file it shows.

``Markdown`` is rendered here to HTML with raw HTML disabled (so a document cannot inject
markup into the page); ``HTML`` is returned as text for a sandboxed ``<iframe srcdoc>``
(no scripts, no same-origin access); both stop at :data:`MARKUP_BYTES` with a note
saying so. ``Metrics`` and ``ClassificationMetrics`` come from the artifact's metadata
(KFP's layout) and read no file. A Parquet dataset gives the first rows of its first row
group (the footer and the first pages, not the file); a CSV dataset its first rows, read
line by line, and its number of rows when the file is small enough to count; other text
files their beginning. Downloads are not previews: they stay whole.

Example:
    >>> preview_of("Markdown", pa.BufferReader(b"# Report"), {}).html   # doctest: +SKIP
    '<h1>Report</h1>\\n'
"""

from __future__ import annotations

import codecs
import csv
import io
from typing import Any, Literal

import pyarrow as pa
from pydantic import BaseModel, Field

__all__ = [
    "COUNT_ROWS_BYTES",
    "MARKUP_BYTES",
    "PREVIEW_ROWS",
    "TEXT_BYTES",
    "Preview",
    "preview_of",
]

PREVIEW_ROWS = 20
MARKUP_BYTES = 1024 * 1024  # Markdown and HTML beyond this are cut, with a note
TEXT_BYTES = 64 * 1024  # the beginning of other text files
COUNT_ROWS_BYTES = 1024 * 1024  # a CSV file up to this size has its rows counted
_SNIFF_BYTES = 8192  # what decides between binary, CSV and text
_PARQUET_BUFFER = 64 * 1024  # read column chunks page by page, not whole

PreviewKind = Literal["markdown", "html", "metrics", "classification", "table", "text", "none"]


class Preview(BaseModel):
    """What the page draws for one artifact; the fields used depend on ``kind``."""

    kind: PreviewKind
    html: str | None = None  # markdown (rendered), html (the document, for srcdoc)
    text: str | None = None
    columns: list[str] = Field(default_factory=list)  # table, metrics
    rows: list[list[Any]] = Field(default_factory=list)
    total_rows: int | None = None  # table: None when the file is too large to count
    labels: list[str] = Field(default_factory=list)  # classification: the classes
    matrix: list[list[int]] = Field(default_factory=list)  # actual x predicted
    roc: list[dict[str, float]] = Field(default_factory=list)  # fpr, tpr, threshold
    truncated: bool = False  # only the beginning is shown: ``note`` says how much
    note: str | None = None  # why nothing (or not everything) is shown


def preview_of(
    artifact_type: str | None, file: pa.NativeFile | None, metadata: dict[str, Any]
) -> Preview:
    """The preview of one artifact from its type, its file opened for random access (None
    for a directory) and its metadata; reads only what the preview shows."""
    kind = (artifact_type or "").rpartition(".")[2]
    if kind == "Metrics":
        rows = [[k, v] for k, v in metadata.items() if isinstance(v, (int, float))]
        return Preview(kind="metrics", columns=["metric", "value"], rows=rows)
    if kind == "ClassificationMetrics":
        return _classification(metadata)
    if file is None:
        return Preview(kind="none", note="a directory: download its files from the run")
    size = file.size()
    if kind in ("Markdown", "HTML"):
        text, cut = _text(file.read(MARKUP_BYTES), size)
        note = _cut_note(MARKUP_BYTES, size) if cut else None
        if kind == "HTML":
            return Preview(kind="html", html=text, truncated=cut, note=note)
        from markdown_it import MarkdownIt

        rendered = MarkdownIt("commonmark", {"html": False}).enable("table").render(text)
        return Preview(kind="markdown", html=rendered, truncated=cut, note=note)
    head = file.read(_SNIFF_BYTES)
    if head[:4] == b"PAR1":
        return _parquet(file)
    if b"\0" in head:  # text files have no NUL bytes
        return Preview(kind="none", note=f"binary content ({size} bytes)")
    if _looks_like_csv(head.decode("utf-8", errors="replace")):
        file.seek(0)
        return _csv(file, size)
    rest = file.read(max(TEXT_BYTES - len(head), 0))
    text, cut = _text(head + rest, size)
    return Preview(
        kind="text", text=text, truncated=cut, note=_cut_note(TEXT_BYTES, size) if cut else None
    )


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


def _parquet(file: pa.NativeFile) -> Preview:
    import pyarrow.parquet as pq

    # pre_buffer=False with a buffer: the first rows' pages are read, not whole column
    # chunks (a 20 MB single-row-group file: about 2 MB read instead of 20).
    parquet = pq.ParquetFile(file, pre_buffer=False, buffer_size=_PARQUET_BUFFER)
    columns = [str(n) for n in parquet.schema_arrow.names]
    rows: list[list[Any]] = []
    if parquet.metadata.num_row_groups:
        batches = parquet.iter_batches(batch_size=PREVIEW_ROWS, row_groups=[0], use_threads=False)
        batch = next(batches, None)
        if batch is not None:
            rows = [[_cell(r.get(c)) for c in columns] for r in batch.to_pylist()]
    return Preview(kind="table", columns=columns, rows=rows, total_rows=parquet.metadata.num_rows)


def _csv(file: pa.NativeFile, size: int) -> Preview:
    """The header and first rows, read line by line; every row counted only in a small file
    (a large one would have to be read whole for its count)."""
    lines = io.TextIOWrapper(file, encoding="utf-8", errors="replace", newline="")
    reader = csv.reader(lines)
    header = next(reader, [])
    rows = [row for _, row in zip(range(PREVIEW_ROWS), reader, strict=False)]
    total: int | None = None
    if size <= COUNT_ROWS_BYTES:
        total = len(rows) + sum(1 for _ in reader)
    lines.detach()  # the caller closes the file
    return Preview(kind="table", columns=header, rows=rows, total_rows=total)


def _looks_like_csv(text: str) -> bool:
    """Whether the first records (quoted newlines allowed) have one number of fields, > 1."""
    whole = text.rpartition("\n")[0]  # the last line may be cut
    records = [r for _, r in zip(range(5), csv.reader(io.StringIO(whole)), strict=False) if r]
    return len(records) >= 2 and len({len(r) for r in records}) == 1 and len(records[0]) > 1


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _text(data: bytes, size: int) -> tuple[str, bool]:
    """``data`` decoded (a character cut in two at the end is dropped) and whether it is
    only the beginning of a file of ``size`` bytes."""
    cut = len(data) < size
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    return decoder.decode(data, final=not cut), cut


def _cut_note(limit: int, size: int) -> str:
    return f"truncated: the first {_bytes(limit)} of {_bytes(size)} are shown; download it whole"


def _bytes(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MiB"
    if n >= 1024:
        return f"{n / 1024:.0f} KiB"
    return f"{n} bytes"
