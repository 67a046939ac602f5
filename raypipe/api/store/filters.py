"""List filters as SQL: the clauses every list shares, and the scope a page token is
bound to.

A filter's values are bound parameters, never part of the statement: a statement depends
only on which fields a filter sets (its *shape*), so a list can build it once per shape
and run it with each call's values (``filter_params``).

Example:
    >>> stmt = apply_list_filter(select(RunRow), RunRow, ListFilter(name_contains="50%"))
    >>> "LIKE" in str(stmt)
    True
    >>> filter_params(ListFilter(name_contains="50%"))
    {'name_like': '%50/%%'}
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select, bindparam, func

from raypipe.api.store.models import Resource, UTCDateTime
from raypipe.api.store.records import ListFilter

__all__ = ["LIKE_ESCAPE", "apply_list_filter", "filter_params", "scope"]

S = TypeVar("S", bound=Select[Any])

LIKE_ESCAPE = "/"


def apply_list_filter(stmt: S, model: type[Resource], filter: ListFilter) -> S:
    """``stmt`` narrowed by the fields every list filter has: a case-insensitive substring
    of the display name (``%`` and ``_`` match themselves) and a creation-time window.
    The values are parameters named as in :func:`filter_params`."""
    if filter.name_contains:
        stmt = stmt.where(
            func.lower(model.display_name).like(bindparam("name_like"), escape=LIKE_ESCAPE)
        )
    if filter.created_after is not None:
        stmt = stmt.where(model.created_at > bindparam("created_after", type_=UTCDateTime))
    if filter.created_before is not None:
        stmt = stmt.where(model.created_at < bindparam("created_before", type_=UTCDateTime))
    return stmt


def filter_params(filter: ListFilter) -> dict[str, Any]:
    """The values of the parameters :func:`apply_list_filter` adds for ``filter``."""
    params: dict[str, Any] = {}
    if filter.name_contains:
        escaped = "".join(
            LIKE_ESCAPE + c if c in ("%", "_", LIKE_ESCAPE) else c
            for c in filter.name_contains.lower()
        )
        params["name_like"] = f"%{escaped}%"
    if filter.created_after is not None:
        params["created_after"] = filter.created_after
    if filter.created_before is not None:
        params["created_before"] = filter.created_before
    return params


def scope(resource: str, namespace: str, filter: ListFilter, parent: str = "") -> str:
    """What a page token of this list is bound to: resource, namespace, parent, filter."""
    return f"{resource}|{namespace}|{parent}|{filter.model_dump_json()}"
