"""Parsed pipeline specs, kept: a stored IR is parsed once, not on every run created.

Creating a run of a stored pipeline version checks its arguments against the version's
IR; parsing that IR (a few KB of JSON into ``PipelineSpec``) was most of a create's CPU.
Versions and digests never change what they name, so the parsed spec is kept by the
version's id (in its namespace) and by digest, in a small LRU map shared by the threads
of one process.

Example:
    >>> specs = SpecCache()
    >>> spec = specs.of_version(store, "team-a", version_id)   # read and parsed
    >>> spec is specs.of_version(store, "team-a", version_id)  # kept
    True
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

from raypipe.api.store import Store
from raypipe.spec.io import loads
from raypipe.spec.models import PipelineSpec

__all__ = ["SpecCache"]


class SpecCache:
    """The last ``capacity`` parsed specs, by pipeline version and by digest."""

    def __init__(self, capacity: int = 256) -> None:
        self.capacity = capacity
        self._specs: OrderedDict[Hashable, PipelineSpec] = OrderedDict()
        self._lock = threading.Lock()

    def of_version(self, store: Store, namespace: str, version_id: str) -> PipelineSpec:
        """The IR of a stored pipeline version.

        A version deleted after it was kept still answers here; the store refuses to
        create a run of it, so nothing runs from a stale entry.

        Raises:
            NotFound: no such version in the namespace (when not kept).
        """

        def read() -> PipelineSpec:
            version = store.get_pipeline_version(namespace, version_id)
            return self.of_digest(
                version.digest,
                version.pipeline_spec or "",
                source=f"version {version.display_name}",
            )

        return self._kept(("version", namespace, version_id), read)

    def of_digest(self, digest: str, text: str, *, source: str) -> PipelineSpec:
        """``text`` parsed (``source`` names it in errors), or the spec kept for ``digest``.

        Raises:
            SpecLoadError: the text is not a valid pipeline.
        """
        return self._kept(("digest", digest), lambda: loads(text, source=source))

    def _kept(self, key: Hashable, make: Callable[[], PipelineSpec]) -> PipelineSpec:
        with self._lock:
            found = self._specs.get(key)
            if found is not None:
                self._specs.move_to_end(key)
                return found
        made = make()  # outside the lock: two threads may both parse once, harmlessly
        with self._lock:
            self._specs[key] = made
            while len(self._specs) > self.capacity:
                self._specs.popitem(last=False)
        return made
