"""Connect to Ray: reuse a running session, start a local one, or join ``address``.

Example:
    >>> connect()                     # doctest: +SKIP  (starts a local Ray if none runs)
    >>> connect("10.0.0.5:6379")      # doctest: +SKIP  (joins that cluster)
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
import time
import warnings
from collections.abc import Iterator
from typing import Any, TypeAlias

from raypipe.errors import ClusterConnectionError

__all__ = ["RAY_DEFAULTS", "connect", "probe", "ray_defaults"]

_PROBE_TIMEOUT_S = 5.0
_CLIENT_PREFIX = "ray://"
_IMPLICIT_ADDRESSES = (None, "auto", "local")  # "whatever Ray finds": never a mismatch
# A Ray Client server starts a server process of its own for each driver that connects.
# Now and then that process dies as it starts (1 of 24 connections in a test loop on
# 2 cores here), and ray.init fails with one of these messages: the process was gone at
# once, or never answered. A new connection starts a new process.
_CLIENT_SERVER_FAILED = ("Starting Ray client server failed", "Proxy failed to Connect to backend")
_CLIENT_ATTEMPTS = 3
_CLIENT_BACKOFF_S = 1.0

_IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

# Ray settings (environment variables Ray reads when a process joins or starts Ray) that
# raypipe uses unless the user set them. A driver buffers the task events of every task it
# submits and sends them to the GCS each interval, one second by default: a run submitting
# 1,500 steps a second grew its driver by 16 MB of them; sent every 100 ms, by 1 MB. The
# dashboard's task list sees the same events, sooner (benchmarks/README.md, w5).
RAY_DEFAULTS: dict[str, str] = {"RAY_task_events_report_interval_ms": "100"}


@contextlib.contextmanager
def ray_defaults() -> Iterator[None]:
    """:data:`RAY_DEFAULTS` in this process's environment (each unless already set) while
    the block starts or joins Ray; the environment is as it was afterwards.

    Ray reads them as it starts: this process's Ray worker, and on a local start the Ray
    processes it launches. :func:`connect` uses it; a program that calls ``ray.init``
    itself can too.

    Example:
        >>> with ray_defaults():                       # doctest: +SKIP
        ...     ray.init(num_cpus=4)
    """
    added = [name for name in RAY_DEFAULTS if name not in os.environ]
    for name in added:
        os.environ[name] = RAY_DEFAULTS[name]
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def connect(address: str | None = None) -> None:
    """Make sure this process is connected to Ray.

    Args:
        address: ``None`` to use a running session or start a local one (or what
            ``RAY_ADDRESS`` names); ``"auto"``; ``"host:port"`` of a cluster's GCS; or a
            ``ray://host:port`` client address. Through a client address, a connection
            whose server process died as it started is tried again (with a warning), up
            to three times in all.

    Raises:
        ClusterConnectionError: the address cannot be reached, quickly and by name; or this
            process is already connected to another cluster (Ray allows one per process).
    """
    import ray

    explicit = None if address in _IMPLICIT_ADDRESSES else address
    if explicit is not None:
        _host_port(explicit)  # a malformed address is reported as such, connected or not
    if ray.is_initialized():
        if explicit is not None:
            _check_connected_to(explicit)
        return
    if explicit is not None:
        probe(explicit)
    for attempt in range(1, _CLIENT_ATTEMPTS + 1):
        try:
            with ray_defaults():
                ray.init(address=address, logging_level=logging.WARNING)
            return
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError...
            died = _client_server_died(address, exc)
            if attempt == _CLIENT_ATTEMPTS or died is None:
                reason = f"{type(exc).__name__}: {exc}"
                raise ClusterConnectionError(address or "(local)", reason) from exc
            warnings.warn(
                f"raypipe: the Ray Client server at {address!r} could not start a server "
                f"for this driver (Ray: {died!r}); connecting again "
                f"(attempt {attempt + 1} of {_CLIENT_ATTEMPTS})",
                RuntimeWarning,
                stacklevel=2,
            )
            time.sleep(_CLIENT_BACKOFF_S * attempt)


def _client_server_died(address: str | None, exc: Exception) -> str | None:
    """Ray's message, if ``ray.init(ray://...)`` failed because the client server's process
    for this driver died as it started: worth a new connection, unlike a bad address, a
    refused token or a runtime environment that cannot be made."""
    if address is None or not address.startswith(_CLIENT_PREFIX):
        return None
    if not isinstance(exc, ConnectionAbortedError):
        return None
    return next((m for m in _CLIENT_SERVER_FAILED if m in str(exc)), None)


def _host_port(address: str) -> tuple[str, int]:
    """``(host, port)`` of ``host:port``, ``[v6]:port`` or ``ray://`` either."""
    host, sep, port = address.removeprefix(_CLIENT_PREFIX).rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ClusterConnectionError(address, "expected host:port or ray://host:port")
    return host.removeprefix("[").removesuffix("]"), int(port)


def probe(address: str, *, named: str | None = None) -> None:
    """Fail within seconds on a ``host:port`` nothing listens on (ray.init, or an HTTP
    client without a timeout, may wait minutes).

    Raises:
        ClusterConnectionError: naming the address (or ``named``, as the user wrote it)
            and why.
    """
    host, port = _host_port(address)
    try:
        with socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ClusterConnectionError(named or address, f"nothing answers there ({exc})") from exc


def _check_connected_to(address: str) -> None:
    """Raise unless the Ray this process is connected to is the one ``address`` names.

    A plain ``host:port`` names a cluster's GCS, compared with the GCS this process uses;
    ``ray://host:port`` names a Ray Client server, compared with the client connection if
    this process is a Ray Client (a GCS address says nothing about which client server
    fronts it, so a driver connected directly never matches a ``ray://`` address).
    """
    import ray

    gcs = str(ray.get_runtime_context().gcs_address)
    client = _client_address()
    if address.startswith(_CLIENT_PREFIX):
        same = client is not None and _same_endpoint(address, client)
    else:
        same = _same_endpoint(address, gcs)
    if not same:
        via = f" through the Ray Client at {_CLIENT_PREFIX}{client}" if client else ""
        raise ClusterConnectionError(
            address,
            f"this process is already connected to the Ray cluster whose GCS is at {gcs}{via};"
            " call ray.shutdown() first to connect to another cluster",
        )


def _client_address() -> str | None:
    """``host:port`` of the Ray Client server this process is connected through, if any."""
    from ray.util import client

    client_ray: Any = client.ray  # untyped
    if not client_ray.is_connected():
        return None
    # Ray keeps the client's server address only on its (private) client worker.
    worker = getattr(client_ray.get_context(), "client_worker", None)
    address = getattr(worker, "_conn_str", None)
    return address.removeprefix(_CLIENT_PREFIX) if isinstance(address, str) else "(unknown)"


def _same_endpoint(a: str, b: str) -> bool:
    """Whether two ``host:port`` addresses reach the same server.

    Same port, and hosts that resolve to a common IP or both to this machine: Ray's GCS and
    client server listen on every interface, so ``localhost:6379``, ``127.0.0.1:6379`` and
    ``<this host's IP>:6379`` are one server (and Ray reports the node's IP, not loopback).
    """
    try:
        (host_a, port_a), (host_b, port_b) = _host_port(a), _host_port(b)
    except ClusterConnectionError:
        return a == b
    if port_a != port_b:
        return False
    if host_a.lower() == host_b.lower():
        return True
    ips_a, ips_b = _resolve(host_a), _resolve(host_b)
    if ips_a & ips_b:
        return True
    return bool(ips_a) and bool(ips_b) and all(map(_is_this_machine, ips_a | ips_b))


def _resolve(host: str) -> set[_IPAddress]:
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return set()
    ips: set[_IPAddress] = set()
    for *_, sockaddr in infos:
        try:
            ips.add(ipaddress.ip_address(str(sockaddr[0]).partition("%")[0]))
        except ValueError:
            continue
    return ips


def _is_this_machine(ip: _IPAddress) -> bool:
    """Loopback, or an address of one of this machine's interfaces (binding to it works)."""
    if ip.is_loopback:
        return True
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((str(ip), 0))
    except OSError:
        return False
    return True
