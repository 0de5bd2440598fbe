"""Leader-election leases in etcd, and fences that tie a write to the current holder of a lease.

`LeaseStoreMixin` adds these operations to `Store`; the API server's lease routes and fenced writes
call them. A lease record is stored at `<root>/leases/<name>` and attached to an etcd lease, so etcd
deletes the record by itself when its holder stops renewing.

Fencing compares the record key's create_revision inside the write's own transaction. Each
acquisition creates the key anew, and etcd never hands out a revision twice, so the compare
succeeds only while the holder that was checked still has that same tenure. Renewals refresh the
etcd lease without rewriting the record, so they never invalidate a fence. The store remembers the
create_revision of each holder's tenure, so a fenced write costs no extra read while the tenure
lasts. When the compare fails, the write reads the record. It then fails with LeaseLostError, or
retries once with the new tenure when the same holder has acquired the lease again.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import aetcd
import grpc
from aetcd import rpc

from skyshift_core.errors import ConflictError, InvalidError, LeaseLostError, NotFoundError, SkyShiftError
from skyshift_core.objects.meta import utc_now, validate_name

if TYPE_CHECKING:
    from skyshift_core.store.etcd import Store

# NOTE: lease records share the key space of the kinds, so no kind may use the plural "leases".
LEASE_SEGMENT = "leases"
FENCE_HEADER = "X-SkyShift-Fence"
MIN_TTL_SECONDS = 1
MAX_TTL_SECONDS = 3600
MAX_HOLDER_LENGTH = 253
# Holder identities, for example `host-1_4242_9f1c2d`; they travel in an HTTP header.
_HOLDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$")
# Attempts of one acquire when the record vanishes or appears between reading and writing it.
_ACQUIRE_ATTEMPTS = 3
_LEASE_RPC_TIMEOUT = 5.0
# Maximum number of fences whose tenure revision a store remembers. Past it the table is cleared,
# which costs one lease read per fence to fill it again.
MAX_REMEMBERED_FENCES = 1024


def validate_holder(holder: str) -> str:
    """Check a holder identity; the error names the allowed characters."""
    if not isinstance(holder, str) or not 0 < len(holder) <= MAX_HOLDER_LENGTH or not _HOLDER.match(holder):
        raise InvalidError(
            f"invalid lease holder {holder!r}: expected 1 to {MAX_HOLDER_LENGTH} characters of letters, digits "
            "and '.', '_', ':', '@', '-', starting with a letter or digit (for example 'host-1_4242')"
        )
    return holder


def validate_lease_name(name: str) -> str:
    try:
        return validate_name(name, "lease name")
    except ValueError as error:
        raise InvalidError(str(error)) from error


@dataclass(frozen=True)
class Fence:
    """A write's claim that `holder` holds lease `lease`; the write fails with LeaseLostError otherwise."""

    lease: str
    holder: str

    @classmethod
    def parse(cls, text: str) -> "Fence":
        """Parse the `X-SkyShift-Fence` header value `<lease-name>/<holder>`."""
        lease, separator, holder = text.strip().partition("/")
        if not separator or not lease or not holder:
            raise InvalidError(
                f"invalid {FENCE_HEADER} header {text!r}: expected <lease-name>/<holder>, "
                "for example controller-manager/host-1_4242"
            )
        return cls(validate_lease_name(lease), validate_holder(holder))

    def header_value(self) -> str:
        return f"{self.lease}/{self.holder}"


@dataclass
class LeaseRecord:
    """One tenure of a lease: who holds it, on which etcd lease, since when.

    `revision` is the record key's create_revision, which is unique to this tenure.
    `remaining_seconds` is the etcd lease's time to live when it was last read or refreshed.
    """

    name: str
    holder: str
    lease_id: int
    ttl: int
    acquired_at: datetime
    revision: int = 0
    remaining_seconds: int | None = None

    def encode(self) -> bytes:
        # Only the fields that never change during a tenure are stored.
        value = {
            "holder": self.holder,
            "lease_id": self.lease_id,
            "ttl": self.ttl,
            "acquired_at": self.acquired_at.isoformat(),
        }
        return json.dumps(value, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, name: str, kv) -> "LeaseRecord":
        value = json.loads(kv.value)
        return cls(
            name=name,
            holder=value["holder"],
            lease_id=int(value["lease_id"]),
            ttl=int(value["ttl"]),
            acquired_at=datetime.fromisoformat(value["acquired_at"]),
            revision=kv.create_revision,
        )

    def to_dict(self) -> dict:
        """The JSON body the lease routes return."""
        return {
            "kind": "Lease",
            "api_version": "v1",
            "name": self.name,
            "holder": self.holder,
            "lease_id": self.lease_id,
            "ttl_seconds": self.ttl,
            "acquired_at": self.acquired_at.isoformat(),
            "remaining_seconds": self.remaining_seconds,
            "resource_version": str(self.revision),
        }


class LeaseStoreMixin:
    """Lease operations for `Store`; they use its `root`, `_call`, `_range` and `_txn`."""

    def lease_key(self: "Store", name: str) -> bytes:
        return f"{self.root}/{LEASE_SEGMENT}/{name}".encode()

    async def _read_lease(self: "Store", name: str) -> LeaseRecord | None:
        response = await self._range(self.lease_key(name))
        if not response.kvs:
            return None
        return LeaseRecord.decode(name, response.kvs[0])

    # ---- etcd lease calls ---------------------------------------------------------------

    async def _grant(self: "Store", ttl: int) -> tuple[int, int]:
        async def operation(client: aetcd.Client) -> tuple[int, int]:
            request = rpc.LeaseGrantRequest(TTL=ttl, ID=0)
            response = await client.leasestub.LeaseGrant(request, timeout=_LEASE_RPC_TIMEOUT, metadata=client.metadata)
            return response.ID, response.TTL

        return await self._call(operation)

    async def _keep_alive(self: "Store", lease_id: int) -> int:
        """Refresh an etcd lease once; return its new time to live in seconds, or 0 when it has expired."""

        async def operation(client: aetcd.Client) -> int:
            call = client.leasestub.LeaseKeepAlive(
                [rpc.LeaseKeepAliveRequest(ID=lease_id)], timeout=_LEASE_RPC_TIMEOUT, metadata=client.metadata
            )
            try:
                async for reply in call:
                    return max(reply.TTL, 0)
            finally:
                call.cancel()
            return 0

        return await self._call(operation)

    async def _revoke(self: "Store", lease_id: int) -> bool:
        """Revoke an etcd lease, which deletes every key attached to it; False when it had already expired."""

        async def operation(client: aetcd.Client) -> bool:
            try:
                await client.leasestub.LeaseRevoke(
                    rpc.LeaseRevokeRequest(ID=lease_id), timeout=_LEASE_RPC_TIMEOUT, metadata=client.metadata
                )
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.NOT_FOUND:
                    return False
                raise
            return True

        return await self._call(operation)

    async def _time_to_live(self: "Store", lease_id: int) -> int:
        async def operation(client: aetcd.Client) -> int:
            request = rpc.LeaseTimeToLiveRequest(ID=lease_id, keys=False)
            response = await client.leasestub.LeaseTimeToLive(
                request, timeout=_LEASE_RPC_TIMEOUT, metadata=client.metadata
            )
            return max(response.TTL, 0)

        return await self._call(operation)

    # ---- lease operations ---------------------------------------------------------------

    async def get_lease(self: "Store", name: str) -> LeaseRecord:
        """Return the current tenure of a lease; NotFoundError when nobody holds it."""
        record = await self._read_lease(validate_lease_name(name))
        if record is None:
            raise NotFoundError(f"lease '{name}' is not held by anyone")
        record.remaining_seconds = await self._time_to_live(record.lease_id)
        return record

    async def acquire_lease(self: "Store", name: str, holder: str, ttl: int) -> LeaseRecord:
        """Take a lease that nobody holds, or refresh it when `holder` holds it already.

        Raises ConflictError, with the current record in its details, when another holder has it.
        etcd may grant a longer time to live than `ttl` (etcd 3.4 with default timing grants
        at least 2 s), and the record stores the granted one.
        """
        validate_lease_name(name)
        validate_holder(holder)
        if not isinstance(ttl, int) or not MIN_TTL_SECONDS <= ttl <= MAX_TTL_SECONDS:
            raise InvalidError(f"invalid ttl_seconds {ttl!r}: expected an integer from {MIN_TTL_SECONDS} to {MAX_TTL_SECONDS}")
        key = self.lease_key(name)

        for _ in range(_ACQUIRE_ATTEMPTS):
            current = await self._read_lease(name)
            if current is not None:
                if current.holder != holder:
                    raise self._held_elsewhere(current)
                # Ours already, for example when the response to an earlier acquire was lost.
                remaining = await self._keep_alive(current.lease_id)
                if remaining > 0:
                    current.remaining_seconds = remaining
                    return current
                continue  # It expired between the read and the refresh; etcd deletes the record now.

            lease_id, granted_ttl = await self._grant(ttl)
            record = LeaseRecord(name, holder, lease_id, granted_ttl, utc_now(), remaining_seconds=granted_ttl)
            compare = [rpc.Compare(key=key, target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL, create_revision=0)]
            put = rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=record.encode(), lease=lease_id))
            response = await self._txn(compare, [put])
            if response.succeeded:
                record.revision = response.header.revision
                self.forget_fences(name)
                return record

            # A retried transaction may find the record its own first attempt wrote.
            written = await self._read_lease(name)
            if written is not None and written.lease_id == lease_id:
                written.remaining_seconds = granted_ttl
                return written
            await self._revoke(lease_id)
            if written is not None and written.holder != holder:
                raise self._held_elsewhere(written)
        raise ConflictError(
            f"lease '{name}' changed hands {_ACQUIRE_ATTEMPTS} times while '{holder}' tried to acquire it; retry"
        )

    @staticmethod
    def _held_elsewhere(record: LeaseRecord) -> ConflictError:
        return ConflictError(
            f"lease '{record.name}' is held by '{record.holder}' since {record.acquired_at.isoformat()} "
            f"with a ttl of {record.ttl} s; retry after it expires or is released",
            details=record.to_dict(),
        )

    async def renew_lease(self: "Store", name: str, holder: str) -> LeaseRecord:
        """Refresh the etcd lease behind `holder`'s tenure; LeaseLostError when the tenure is over."""
        validate_lease_name(name)
        validate_holder(holder)
        current = await self._read_lease(name)
        if current is None:
            raise LeaseLostError(f"lease '{name}' is not held by anyone: it expired or was released; acquire it again")
        if current.holder != holder:
            raise LeaseLostError(
                f"lease '{name}' is held by '{current.holder}', not by '{holder}'; acquire it again after it expires",
                details=current.to_dict(),
            )
        remaining = await self._keep_alive(current.lease_id)
        if remaining <= 0:
            raise LeaseLostError(f"lease '{name}' of '{holder}' expired before it was renewed; acquire it again")
        current.remaining_seconds = remaining
        return current

    async def release_lease(self: "Store", name: str, holder: str) -> LeaseRecord:
        """End `holder`'s tenure now, so another candidate can acquire the lease at once."""
        validate_lease_name(name)
        validate_holder(holder)
        current = await self._read_lease(name)
        if current is None:
            raise NotFoundError(f"lease '{name}' is not held by anyone; there is nothing to release")
        if current.holder != holder:
            raise LeaseLostError(
                f"lease '{name}' is held by '{current.holder}', not by '{holder}'; only the holder can release it",
                details=current.to_dict(),
            )
        # Revoking by lease id can only end this tenure: a later tenure has another etcd lease.
        if not await self._revoke(current.lease_id):
            raise NotFoundError(f"lease '{name}' of '{holder}' had already expired; there is nothing to release")
        self.forget_fences(name)
        current.remaining_seconds = 0
        return current

    # ---- fencing ------------------------------------------------------------------------

    async def fence_compare(self: "Store", fence: Fence | None) -> list:
        """Return the compares that fence a write by `fence` (none without a fence).

        The tenure's create_revision comes from the store's memory when this holder's tenure was
        seen before. Otherwise the lease record is read, and LeaseLostError is raised at once when
        the fence's holder does not hold the lease now. A remembered tenure that has ended makes
        the transaction fail, and `recheck_fence` then finds out why.
        """
        if fence is None:
            return []
        revision = self._fence_revisions.get(fence)
        if revision is None:
            current = await self._read_lease(fence.lease)
            if current is None or current.holder != fence.holder:
                raise self._fence_lost(fence, current)
            revision = current.revision
            self._remember_fence(fence, revision)
        return [self._fence_compare(fence, revision)]

    def _fence_compare(self: "Store", fence: Fence, revision: int):
        key = self.lease_key(fence.lease)
        return rpc.Compare(key=key, target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL, create_revision=revision)

    def _remember_fence(self: "Store", fence: Fence, revision: int) -> None:
        if len(self._fence_revisions) >= MAX_REMEMBERED_FENCES:
            self._fence_revisions.clear()
        self._fence_revisions[fence] = revision

    def forget_fences(self: "Store", lease: str) -> None:
        """Drop the remembered tenures of `lease`, after this store saw it change hands."""
        for fence in [fence for fence in self._fence_revisions if fence.lease == lease]:
            del self._fence_revisions[fence]

    async def recheck_fence(self: "Store", fence: Fence | None, compares: list, *, retried: bool) -> list | None:
        """After a failed fenced transaction, return None when the fence held, so another compare failed.

        Raises LeaseLostError when the holder no longer holds the lease. The holder may have a
        newer tenure than the one compared, because the store remembered an old one or the holder
        acquired the lease again during the write. Then it returns the compares of the new tenure
        for one retry, or raises LeaseLostError when `retried` says the write had its retry.
        """
        if fence is None or not compares:
            return None
        current = await self._read_lease(fence.lease)
        if current is not None and current.revision == compares[0].create_revision:
            return None
        self._fence_revisions.pop(fence, None)
        if current is None or current.holder != fence.holder or retried:
            raise self._fence_lost(fence, current)
        self._remember_fence(fence, current.revision)
        return [self._fence_compare(fence, current.revision)]

    async def check_fence(self: "Store", fence: Fence | None, compares: list) -> None:
        """After a failed transaction, raise LeaseLostError when its fence compare was the one that failed.

        A tenure's create_revision never comes back once the record is gone, so finding it now
        proves the fence held when the transaction ran, and another compare failed.
        """
        if fence is None or not compares:
            return
        current = await self._read_lease(fence.lease)
        if current is None or current.revision != compares[0].create_revision:
            self._fence_revisions.pop(fence, None)
            raise self._fence_lost(fence, current)

    @staticmethod
    def _fence_lost(fence: Fence, current: LeaseRecord | None) -> SkyShiftError:
        now = "nobody holds it now" if current is None else f"it is held by '{current.holder}' now"
        return LeaseLostError(
            f"write rejected: it was fenced by lease '{fence.lease}' for holder '{fence.holder}', but {now}; "
            "the writer is no longer the leader and must stop writing",
            details={"lease": fence.lease, "holder": fence.holder},
        )
