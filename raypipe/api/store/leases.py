"""Service leases in the store: which service instance holds a service-wide role.

``raypipe server --workers N`` starts N processes that serve the API; exactly one of them
should run the executor and the recurring-run scheduler. Each process asks for the role's
lease; the store gives it to one (an atomic claim), the holder renews it every few
seconds, and when the holder dies its lease expires and another process takes it.

Example:
    >>> store.acquire_lease("executor", "instance-1", seconds=30)
    True
    >>> store.acquire_lease("executor", "instance-2", seconds=30)   # held, not expired
    False
    >>> store.lease_holder("executor").owner_id
    'instance-1'
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from raypipe.api.store.base import StoreBase, check_id, utc_now
from raypipe.api.store.errors import InvalidArgument
from raypipe.api.store.models import ServiceLeaseRow
from raypipe.api.store.records import ServiceLease

__all__ = ["LeaseStore"]


class LeaseStore(StoreBase):
    """The service lease methods of ``Store``."""

    def acquire_lease(self, name: str, owner_id: str, *, seconds: float) -> bool:
        """Take or renew the lease ``name`` for ``seconds``: True if ``owner_id`` holds it
        now (it was free, expired, or already its own). Of two instances asking at once,
        exactly one gets it.

        Raises:
            InvalidArgument: a malformed name or owner id, or ``seconds`` not positive.
        """
        check_id("service_lease", "name", name)
        check_id("service_lease", "owner_id", owner_id)
        if not seconds > 0:
            raise InvalidArgument("service_lease", "seconds", f"must be positive, got {seconds}")
        now = utc_now()
        expires = now + timedelta(seconds=seconds)
        try:
            with self._write() as session:
                row = session.scalars(
                    select(ServiceLeaseRow).where(ServiceLeaseRow.name == name).with_for_update()
                ).first()
                if row is None:
                    session.add(
                        ServiceLeaseRow(
                            name=name, owner_id=owner_id, acquired_at=now, expires_at=expires
                        )
                    )
                    return True
                if row.owner_id != owner_id and row.expires_at > now:
                    return False
                if row.owner_id != owner_id:
                    row.owner_id, row.acquired_at = owner_id, now
                row.expires_at = expires
                return True
        except IntegrityError:  # another instance inserted the first lease at the same time
            return False

    def release_lease(self, name: str, owner_id: str) -> bool:
        """Give the lease up (on a clean stop) if ``owner_id`` holds it, so another instance
        takes it at once; returns whether it did."""
        stmt = (
            delete(ServiceLeaseRow)
            .where(ServiceLeaseRow.name == name, ServiceLeaseRow.owner_id == owner_id)
            .returning(ServiceLeaseRow.name)
        )
        with self._write() as session:
            return session.execute(stmt).first() is not None

    def lease_holder(self, name: str) -> ServiceLease | None:
        """Who holds the lease ``name`` and until when (None if nobody ever took it or it
        was released); an expired lease is returned as it is, ``expires_at`` in the past."""
        with self._read() as session:
            row = session.get(ServiceLeaseRow, name)
            if row is None:
                return None
            return ServiceLease(
                name=row.name,
                owner_id=row.owner_id,
                acquired_at=row.acquired_at,
                expires_at=row.expires_at,
            )
