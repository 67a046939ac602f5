"""List filters as SQL: the clauses every list shares, and the scope a page token is
bound to.

Example:
    >>> stmt = apply_list_filter(select(RunRow), RunRow, ListFilter(name_contains="50%"))
    >>> "LIKE" in str(stmt)
    True
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select, func

from raypipe.api.store.models import Resource
from raypipe.api.store.records import ListFilter

__all__ = ["apply_list_filter", "scope"]

S = TypeVar("S", bound=Select[Any])


def apply_list_filter(stmt: S, model: type[Resource], filter: ListFilter) -> S:
    """``stmt`` narrowed by the fields every list filter has: a case-insensitive substring
    of the display name (``%`` and ``_`` match themselves) and a creation-time window."""
    if filter.name_contains:
        stmt = stmt.where(
            func.lower(model.display_name).contains(filter.name_contains.lower(), autoescape=True)
        )
    if filter.created_after is not None:
        stmt = stmt.where(model.created_at > filter.created_after)
    if filter.created_before is not None:
        stmt = stmt.where(model.created_at < filter.created_before)
    return stmt


def scope(resource: str, namespace: str, filter: ListFilter, parent: str = "") -> str:
    """What a page token of this list is bound to: resource, namespace, parent, filter."""
    return f"{resource}|{namespace}|{parent}|{filter.model_dump_json()}"
