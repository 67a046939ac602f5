"""What the service store raises when a request cannot be carried out.

```
RaypipeError
 └── StoreError            the store refused a request (never a database driver error)
      ├── NotFound          no such id in this namespace (a foreign id is not found too)
      ├── AlreadyExists     a name, id or schedule tick is taken
      ├── Conflict          the request does not fit the current state (delete a running run)
      └── InvalidArgument   a value is malformed (empty name, bad page token, no trigger)
```

Each error names the resource and, where there is one, its id, so that the API can map it
to a status code (404, 409, 409, 400) and show the message as it is.

Example:
    >>> str(NotFound("run", "4f1c"))
    'run 4f1c not found'
"""

from __future__ import annotations

from raypipe.errors import RaypipeError

__all__ = ["AlreadyExists", "Conflict", "InvalidArgument", "NotFound", "StoreError"]


class StoreError(RaypipeError):
    """Root of the errors the service store raises on purpose."""

    def __init__(self, message: str, *, resource: str, id: str | None = None) -> None:
        self.resource, self.id = resource, id
        super().__init__(message)


class NotFound(StoreError):
    """No ``resource`` with this id in the caller's namespace."""

    def __init__(self, resource: str, id: str) -> None:
        super().__init__(f"{resource} {id} not found", resource=resource, id=id)


class AlreadyExists(StoreError):
    """A ``resource`` with this name or id exists already (or a tick is claimed)."""

    def __init__(self, resource: str, what: str, *, id: str | None = None) -> None:
        super().__init__(f"{resource} {what} already exists", resource=resource, id=id)


class Conflict(StoreError):
    """The request contradicts the state of ``resource`` (the message says how)."""

    def __init__(self, resource: str, id: str | None, problem: str) -> None:
        where = f"{resource} {id}" if id else resource
        super().__init__(f"{where}: {problem}", resource=resource, id=id)


class InvalidArgument(StoreError):
    """A value passed to the store is malformed; ``field`` names it."""

    def __init__(self, resource: str, field: str, problem: str) -> None:
        self.field = field
        super().__init__(f"{resource}.{field}: {problem}", resource=resource)
