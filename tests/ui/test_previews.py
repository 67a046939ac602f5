"""Artifact previews read only what they show: the first rows of a CSV or Parquet file,
the beginning of Markdown, HTML and text (with a note saying it is cut), nothing of a
metrics artifact; each test counts the bytes the preview read from a real file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from raypipe.api.ui.previews import MARKUP_BYTES, PREVIEW_ROWS, TEXT_BYTES, preview_of


class CountingFile:
    """A file that counts the bytes read from it (``pa.PythonFile`` makes it a NativeFile)."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("rb")
        self.read_bytes = 0
        self.closed = False

    def read(self, n: int = -1) -> bytes:
        data = self._file.read(n)
        self.read_bytes += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        self._file.close()
        self.closed = True


def _preview(kind: str, path: Path, metadata: dict[str, Any] | None = None) -> tuple[Any, int]:
    counting = CountingFile(path)
    with pa.PythonFile(counting, mode="r") as file:
        shown = preview_of(kind, file, metadata or {})
    return shown, counting.read_bytes


def test_a_parquet_preview_reads_the_first_rows_not_the_file(tmp_path: Path) -> None:
    path = tmp_path / "wide.parquet"
    n = 20_000  # one row group of about 4 MB, uncompressed: several 1 MB pages
    table = pa.table({"k": range(n), "v": [f"{i:08d}" + "x" * 200 for i in range(n)]})
    pq.write_table(table, path, row_group_size=n, compression="none")
    shown, read = _preview("Dataset", path)
    assert shown.kind == "table" and shown.total_rows == n  # from the footer
    assert shown.rows[1] == [1, "00000001" + "x" * 200]
    assert len(shown.rows) == PREVIEW_ROWS
    size = path.stat().st_size
    assert read < size / 3, (read, size)


def test_a_large_csv_preview_reads_its_first_rows_and_leaves_the_count_open(
    tmp_path: Path,
) -> None:
    path = tmp_path / "big.csv"
    with path.open("w") as f:
        f.write("id,name,note\n")
        f.writelines(f'{i},row{i},"a, quoted\nnote"\n' for i in range(100_000))
    shown, read = _preview("Dataset", path)
    assert shown.columns == ["id", "name", "note"]
    assert shown.rows[0] == ["0", "row0", "a, quoted\nnote"]  # a newline inside quotes
    assert len(shown.rows) == PREVIEW_ROWS and shown.total_rows is None
    assert read <= 64 * 1024, read


def test_a_small_csv_preview_counts_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "small.csv"
    path.write_text("a,b\n" + "".join(f'{i},"x\ny"\n' for i in range(50)))
    shown, _ = _preview("Dataset", path)
    assert (shown.total_rows, len(shown.rows), shown.truncated) == (50, PREVIEW_ROWS, False)


def test_markdown_and_html_beyond_the_cap_are_cut_with_a_notice(tmp_path: Path) -> None:
    path = tmp_path / "long.md"
    path.write_text("# Long report\n\n" + "é word " * (MARKUP_BYTES // 4))  # about 2 MiB
    shown, read = _preview("Markdown", path)
    assert shown.kind == "markdown" and shown.truncated
    assert "<h1>Long report</h1>" in (shown.html or "") and "\ufffd" not in (shown.html or "")
    assert (shown.note or "").startswith("truncated: the first 1.0 MiB of 2.0 MiB")
    assert read == MARKUP_BYTES
    page, _ = _preview("HTML", path)
    assert page.kind == "html" and page.truncated and len(page.html or "") < MARKUP_BYTES
    short = tmp_path / "short.md"
    short.write_text("# Short\n")
    assert not _preview("Markdown", short)[0].truncated


def test_text_binary_and_metrics_previews(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("plain words " * TEXT_BYTES)
    shown, read = _preview("Artifact", text)
    assert shown.kind == "text" and shown.truncated and read == TEXT_BYTES
    assert (shown.text or "").startswith("plain words")
    binary = tmp_path / "model.bin"
    binary.write_bytes(b"\x00\x01binary" * 1000)
    assert _preview("Model", binary)[0].kind == "none"
    metrics, read = _preview("system.Metrics", binary, {"accuracy": 0.9, "name": "x"})
    assert (metrics.rows, read) == ([["accuracy", 0.9]], 0)  # from the metadata alone
    link = preview_of("Markdown", pa.BufferReader(b"[x](javascript:alert(1))"), {}).html
    assert "href" not in (link or "")  # a javascript: link stays text
    assert preview_of("Model", None, {}).kind == "none"  # a directory
