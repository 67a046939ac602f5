"""Keyset pagination: a page continues after the last row's (sort key, id), never at an
offset, so page 2,000 of 100,000 runs costs what page 1 does (an index range scan).

A page token is opaque to callers: base64 of the sort, the last key and a fingerprint of
the list it came from (resource, namespace, filter, parent), so a token replayed against
another list or order is refused rather than silently wrong.

Example:
    >>> stmt = select(RunRow).where(RunRow.namespace == bindparam("namespace"))
    >>> rows, token = fetch_page(session, stmt, RunRow, sort="-created_at", page_size=50,
    ...                          page_token=None, scope="runs|team-a|{}",
    ...                          params={"namespace": "team-a"})  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar, get_args

from sqlalchemy import Connection, Integer, Select, bindparam, tuple_
from sqlalchemy.orm import InstrumentedAttribute, Session

from raypipe.api.store.errors import InvalidArgument
from raypipe.api.store.models import Resource
from raypipe.api.store.records import SortOrder

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "fetch_page"]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
"""Larger requests get this many rows (and a token for the rest)."""

M = TypeVar("M", bound=Resource)


def fetch_page(
    session: Session | Connection,
    stmt: Select[M],
    model: type[M],
    *,
    sort: SortOrder,
    page_size: int,
    page_token: str | None,
    scope: str,
    params: Mapping[str, Any] | None = None,
    rows_only: bool = False,
    reused: bool = False,
) -> tuple[list[Any], str | None]:
    """Run ``stmt`` (a filtered ``select(model)``, its values bound to ``params``) for one
    page: the rows and the token of the next page (``None`` on the last). ``scope`` names
    the list (see the module docstring). With ``rows_only``, ``stmt`` selects columns of
    ``model``'s table and the page is plain rows (``row.id``, ``row.created_at``...): no
    ORM objects, which cost more than the query for a page of 50 runs. ``reused`` says
    ``stmt`` is one object used for every call of its shape (its values all in
    ``params``): its paged forms are then built once, not for each page (building them
    cost as much as running the query).

    Raises:
        InvalidArgument: ``sort`` is unknown, ``page_size`` is below 1, or ``page_token``
            is malformed or belongs to another list or order.
    """
    if sort not in get_args(SortOrder):
        raise InvalidArgument(
            "list", "sort", f"expected one of {get_args(SortOrder)}, got {sort!r}"
        )
    if page_size < 1:
        raise InvalidArgument("list", "page_size", f"must be at least 1, got {page_size}")
    page_size = min(page_size, MAX_PAGE_SIZE)
    by_name = sort.lstrip("-") == "name"
    fingerprint = hashlib.sha256(f"{scope}|{sort}".encode()).hexdigest()[:16]
    values = {**(params or {}), "page_limit": page_size + 1}
    if page_token is not None:
        values["page_after_key"], values["page_after_id"] = _decode(
            page_token, fingerprint, by_name
        )
    build: Callable[..., Select[Any]] = _paged_once if reused else _paged
    page = build(stmt, model, sort, page_token is not None)
    result = session.execute(page, values)
    # ``all()`` fetches the page in one driver call, not a row at a time.
    rows = list((result if rows_only else result.scalars()).all())
    if len(rows) <= page_size:
        return rows, None
    rows = rows[:page_size]
    last = rows[-1]
    return rows, _encode(fingerprint, last.display_name if by_name else last.created_at, last.id)


def _paged(stmt: Select[M], model: type[M], sort: SortOrder, after: bool) -> Select[M]:
    """``stmt`` in ``sort`` order, ``page_limit`` rows, after the row of
    (``page_after_key``, ``page_after_id``) when ``after``: parameters, not values."""
    key_column: InstrumentedAttribute[Any] = (
        model.display_name if sort.lstrip("-") == "name" else model.created_at
    )
    id_column = model.id
    descending = sort.startswith("-")
    if after:
        # A row-value comparison, which both databases turn into an index range.
        row = tuple_(key_column, id_column)
        last = tuple_(
            bindparam("page_after_key", type_=key_column.type),
            bindparam("page_after_id", type_=id_column.type),
        )
        stmt = stmt.where(row < last if descending else row > last)
    order = (key_column.desc(), id_column.desc()) if descending else (key_column, id_column)
    return stmt.order_by(*order).limit(bindparam("page_limit", type_=Integer))


# The paged forms of statements that are built once per shape (``reused=True``): a few
# dozen shapes in all (each list's filter fields set or not, four orders, first page or
# not).
_paged_once = functools.lru_cache(maxsize=512)(_paged)


def _encode(fingerprint: str, key: str | datetime, last_id: str) -> str:
    value = key.isoformat() if isinstance(key, datetime) else key
    payload = json.dumps({"f": fingerprint, "k": value, "i": last_id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def _decode(token: str, fingerprint: str, by_name: bool) -> tuple[str | datetime, str]:
    try:
        padded = token + "=" * (-len(token) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(payload, dict) or payload.get("f") != fingerprint:
            raise ValueError("token of another list")
        key, last_id = payload["k"], payload["i"]
        if not isinstance(key, str) or not isinstance(last_id, str):
            raise ValueError("bad key")
        return (key if by_name else datetime.fromisoformat(key)), last_id
    except (ValueError, KeyError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidArgument(
            "list", "page_token", "malformed, or from another list, filter or sort order"
        ) from exc
