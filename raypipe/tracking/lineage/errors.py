"""The one error the lineage store raises on purpose.

Example:
    >>> raise LineageError("lineage root 'ftp://x': cannot be opened: unsupported scheme")
    Traceback (most recent call last):
    ...
    raypipe.tracking.lineage.errors.LineageError: lineage root 'ftp://x': cannot be opened: ...
"""

from __future__ import annotations

from raypipe.errors import RaypipeError

__all__ = ["LineageError"]


class LineageError(RaypipeError):
    """A lineage root cannot be opened or read, or a lineage query is wrong.

    The message names the root, the table or the SQL that failed, and why.
    """
