"""Which worker group of a cluster a step belongs to: one group per (image, accelerator).

A RayCluster generated from a pipeline (``raypipe kuberay cluster``) has one worker group
for each distinct pair of container image and accelerator its steps ask for, and every
node of a group carries the Ray node label :data:`GROUP_LABEL` with the group's name.
A step with ``image=`` or ``accelerator=`` is scheduled with that label as its selector,
so it runs in the pod that has its image or its GPU. Both sides take the name from
:func:`worker_group`, so they agree without sharing anything else.

Example:
    >>> worker_group(None, None)
    'default'
    >>> worker_group("ghcr.io/acme/trainer:1.4", "H100")
    'trainer-h100-f69cd1'
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["DEFAULT_GROUP", "GROUP_LABEL", "worker_group"]

GROUP_LABEL = "raypipe.io/group"
"""The Ray node label (and Kubernetes pod label) naming a node's worker group."""

DEFAULT_GROUP = "default"
"""The group of steps that ask for neither an image nor an accelerator."""

_MAX_NAME = 40  # KubeRay derives pod names from it; leave room for its suffixes
_NOT_NAME = re.compile(r"[^a-z0-9]+")


def worker_group(image: str | None, accelerator: str | None) -> str:
    """The worker group's name for steps with this image and accelerator.

    A lowercase DNS label (letters, digits, ``-``): the image's base name without its
    tag or digest, the accelerator, and six hex digits of the pair's sha256, so two
    images with one base name (``a/trainer`` and ``b/trainer``) get two groups.
    """
    if image is None and accelerator is None:
        return DEFAULT_GROUP
    parts: list[str] = []
    if image is not None:
        base = image.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]
        parts.append(base)
    if accelerator is not None:
        parts.append(accelerator)
    slug = _NOT_NAME.sub("-", "-".join(parts).lower()).strip("-") or "group"
    digest = hashlib.sha256(f"{image or ''}\0{accelerator or ''}".encode()).hexdigest()[:6]
    return f"{slug[: _MAX_NAME - 7].rstrip('-')}-{digest}"
