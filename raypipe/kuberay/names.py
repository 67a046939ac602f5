"""Kubernetes names and label values made from pipeline names, and checks of given ones.

Example:
    >>> object_name("Train & Eval v2", max_length=47)
    'train-eval-v2'
    >>> label_value("my pipeline!")
    'my-pipeline'
"""

from __future__ import annotations

import re

__all__ = [
    "DNS1035",
    "DNS1123_LABEL",
    "check_namespace",
    "check_object_name",
    "label_value",
    "object_name",
]

DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
"""A DNS-1035 label: what KubeRay requires of RayCluster, RayJob and RayService names."""

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
"""A DNS-1123 label: what Kubernetes requires of a namespace."""

_NOT_NAME = re.compile(r"[^a-z0-9]+")
_NOT_LABEL = re.compile(r"[^A-Za-z0-9._-]+")


def object_name(text: str, *, max_length: int) -> str:
    """A DNS-1035 label from ``text``: lowercase, ``-`` for the rest, starting with a letter."""
    name = _NOT_NAME.sub("-", text.lower()).strip("-")
    name = re.sub(r"^[^a-z]+", "", name)
    return name[:max_length].rstrip("-") or "raypipe"


def check_object_name(name: str, *, max_length: int) -> str | None:
    """Why ``name`` cannot name the object, or ``None`` when it can."""
    if len(name) > max_length:
        return f"{name!r} is longer than {max_length} characters"
    if not DNS1035.match(name):
        return (
            f"{name!r} is not a DNS-1035 label (lowercase letters, digits and '-', "
            "starting with a letter and ending with a letter or digit)"
        )
    return None


def check_namespace(namespace: str) -> str | None:
    """Why ``namespace`` cannot name a namespace, or ``None`` when it can."""
    if len(namespace) > 63 or not DNS1123_LABEL.match(namespace):
        return (
            f"{namespace!r} is not a namespace name (at most 63 lowercase letters, digits "
            "and '-', starting and ending with a letter or digit)"
        )
    return None


def label_value(text: str) -> str:
    """A valid Kubernetes label value from ``text`` (63 characters at most)."""
    value = _NOT_LABEL.sub("-", text).strip("-._")
    return value[:63].rstrip("-._")
