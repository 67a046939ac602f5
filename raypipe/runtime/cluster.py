"""Connect to Ray: reuse a running session, start a local one, or join ``address``.

Example:
    >>> connect()                     # doctest: +SKIP  (starts a local Ray if none runs)
    >>> connect("10.0.0.5:6379")      # doctest: +SKIP  (joins that cluster)
"""

from __future__ import annotations

import logging
import socket

from raypipe.errors import ClusterConnectionError

__all__ = ["connect"]

_PROBE_TIMEOUT_S = 5.0


def connect(address: str | None = None) -> None:
    """Make sure this process is connected to Ray.

    Args:
        address: ``None`` to use a running session or start a local one (or what
            ``RAY_ADDRESS`` names); ``"auto"``; ``"host:port"`` of a cluster's GCS; or a
            ``ray://host:port`` client address.

    Raises:
        ClusterConnectionError: the address cannot be reached, quickly and by name.
    """
    import ray

    if ray.is_initialized():
        return
    if address not in (None, "auto", "local"):
        _probe(address)
    try:
        ray.init(address=address, logging_level=logging.WARNING)
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError...
        raise ClusterConnectionError(address or "(local)", f"{type(exc).__name__}: {exc}") from exc


def _probe(address: str) -> None:
    """Fail within seconds on an address nothing listens on (ray.init may wait minutes)."""
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ClusterConnectionError(address, "expected host:port or ray://host:port")
    try:
        with socket.create_connection((host, int(port)), timeout=_PROBE_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ClusterConnectionError(address, f"nothing answers there ({exc})") from exc
