"""Authentication records in etcd (password hashes, token digests, invites) and multi-key transactions.

`SecretStoreMixin` adds these operations to `Store`; only `skyshift_core.auth` calls them. Records
live under `<root>/_auth/`, a prefix no kind can use because plurals are lower-case names that never
start with `_`, so no list, watch or object route can ever return one. Values are JSON objects.

`Transaction` collects object writes, record writes and their preconditions, and commits them in
one etcd transaction, so registering a user (User object, password hash, invite marked used, Role
bindings) either happens whole or not at all.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aetcd import rpc

from skyshift_core.objects.meta import DEFAULT_NAMESPACE, Object, utc_now
from skyshift_core.objects.misc import Role
from skyshift_core.store.keys import list_prefix, object_key, prefix_range_end

if TYPE_CHECKING:
    from skyshift_core.store.etcd import Store

AUTH_SEGMENT = "_auth"


@dataclass
class SecretRecord:
    """One authentication record: its path below `<root>/_auth/`, its JSON value and etcd's revisions."""

    path: str
    value: dict[str, Any]
    mod_revision: int
    lease: int = 0


class Transaction:
    """Writes that commit together in one etcd transaction, or not at all.

    Each write adds its own precondition (an object or record is new, or still at the revision the
    caller read). `commit` returns the revision of the write, or None when a precondition failed;
    the caller then reads again and decides whether to retry.
    """

    def __init__(self, store: "Store"):
        self._store = store
        self.compares: list = []
        self.operations: list = []
        self._created: list[Object] = []

    def create(self, obj: Object) -> Object:
        """Add a new object (its name must still be free) and return it with server-set metadata."""
        prepared = self._store.prepare_new(obj)
        model = type(prepared)
        key = object_key(model, prepared.metadata.namespace, prepared.metadata.name, self._store.root)
        self.compares.append(
            rpc.Compare(key=key, target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL, create_revision=0)
        )
        self.operations.append(rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=self._store._encode(prepared))))
        self._created.append(prepared)
        return prepared

    def replace(self, obj: Object, expected_revision: int) -> None:
        """Write `obj` over the stored object, which must still be at `expected_revision`."""
        model = type(obj)
        namespace = (obj.metadata.namespace or DEFAULT_NAMESPACE) if model.namespaced else None
        key = object_key(model, namespace, obj.metadata.name, self._store.root)
        self.compares.append(
            rpc.Compare(key=key, target=rpc.Compare.MOD, result=rpc.Compare.EQUAL, mod_revision=expected_revision)
        )
        self.operations.append(rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=self._store._encode(obj))))

    def require_object(self, model: type[Object], namespace: str | None, name: str) -> None:
        """Require that the object exists (at any revision)."""
        key = object_key(model, namespace if model.namespaced else None, name, self._store.root)
        self.compares.append(
            rpc.Compare(key=key, target=rpc.Compare.CREATE, result=rpc.Compare.GREATER, create_revision=0)
        )

    def require_absent(self, path: str) -> None:
        """Require that no record exists at `path`."""
        key = self._store.secret_key(path)
        self.compares.append(
            rpc.Compare(key=key, target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL, create_revision=0)
        )

    def require_revision(self, path: str, mod_revision: int) -> None:
        """Require that the record at `path` is still at `mod_revision` (0: that it does not exist)."""
        key = self._store.secret_key(path)
        self.compares.append(
            rpc.Compare(key=key, target=rpc.Compare.MOD, result=rpc.Compare.EQUAL, mod_revision=mod_revision)
        )

    def put_secret(self, path: str, value: dict[str, Any], *, lease: int = 0) -> None:
        """Write a record; with `lease`, etcd deletes it when that lease expires."""
        key = self._store.secret_key(path)
        data = json.dumps(value, separators=(",", ":")).encode()
        self.operations.append(rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=data, lease=lease)))

    def delete_secret(self, path: str) -> None:
        self.operations.append(
            rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=self._store.secret_key(path)))
        )

    def delete_secret_prefix(self, path: str) -> None:
        """Delete every record whose path starts with `path` + '/'."""
        prefix = self._store.secret_key(path.rstrip("/") + "/")
        self.operations.append(
            rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=prefix, range_end=prefix_range_end(prefix)))
        )

    async def commit(self) -> int | None:
        """Send everything as one transaction; return its revision, or None when a precondition failed."""
        response = await self._store._txn(self.compares, self.operations)
        if not response.succeeded:
            return None
        for created in self._created:
            created.metadata.resource_version = str(response.header.revision)
        return response.header.revision


class SecretStoreMixin:
    """Authentication records for `Store`; they use its `root`, `_call`, `_range` and `_txn`."""

    def secret_key(self: "Store", path: str) -> bytes:
        return f"{self.root}/{AUTH_SEGMENT}/{path}".encode()

    def transaction(self: "Store") -> Transaction:
        return Transaction(self)

    def prepare_new(self: "Store", obj: Object) -> Object:
        """Return a copy of a new object with the metadata the server sets on create and its kind's default status.

        Every kind with a `status` field has a status subresource, through which controllers write it, so a
        submitted status is dropped, as Kubernetes drops it on create. A manifest saved with
        `get -o yaml` then re-creates a Job that is scheduled and run again, not one already Succeeded.
        """
        model = type(obj)
        namespace = (obj.metadata.namespace or DEFAULT_NAMESPACE) if model.namespaced else None
        metadata = obj.metadata.model_copy(
            update={
                "namespace": namespace,
                "uid": str(uuid.uuid4()),
                "generation": 1,
                "creation_timestamp": utc_now(),
                "resource_version": None,
                "deletion_timestamp": None,
            }
        )
        update: dict = {"metadata": metadata}
        # model_fields_set names the fields that a parsed body contained, so a create without a status
        # (the common case) skips building a default, which costs more than encoding the object.
        # NOTE: a status changed in place on an object built in code, not parsed, is not detected.
        status_field = model.model_fields.get("status")
        if "status" in obj.model_fields_set and status_field is not None and not status_field.is_required():
            update["status"] = status_field.get_default(call_default_factory=True)
        return obj.model_copy(update=update)

    def _record(self: "Store", kv) -> SecretRecord:
        prefix = f"{self.root}/{AUTH_SEGMENT}/"
        return SecretRecord(kv.key.decode().removeprefix(prefix), json.loads(kv.value), kv.mod_revision, kv.lease)

    async def get_secret(self: "Store", path: str) -> SecretRecord | None:
        response = await self._range(self.secret_key(path))
        if not response.kvs:
            return None
        return self._record(response.kvs[0])

    async def list_secrets(self: "Store", path: str) -> list[SecretRecord]:
        """Return every record whose path starts with `path` + '/', in key order."""
        prefix = self.secret_key(path.rstrip("/") + "/")
        response = await self._range(prefix, prefix_range_end(prefix))
        return [self._record(kv) for kv in response.kvs]

    async def grant_secret_lease(self: "Store", ttl_seconds: int) -> int:
        """Grant an etcd lease of `ttl_seconds`; records written with it disappear when it expires."""
        lease_id, _ = await self._grant(max(int(ttl_seconds), 1))
        return lease_id

    async def user_cleanup(self: "Store", name: str) -> tuple[list, list]:
        """Return the compares and operations that delete a user's password hash and tokens and remove
        the user from every Role binding, for the transaction that deletes the User object.

        Removing the bindings matters because they name users: a new user who reused the name would
        otherwise inherit the deleted user's Roles.
        """
        transaction = Transaction(self)
        transaction.delete_secret(f"passwords/{name}")
        transaction.delete_secret_prefix(f"tokens/{name}")
        await self.unbind_everywhere(transaction, name)
        return transaction.compares, transaction.operations

    async def unbind_everywhere(
        self: "Store", transaction: Transaction, name: str, keep: frozenset[str] = frozenset()
    ) -> None:
        """Add to `transaction` the removal of user `name` from every Role binding, in every namespace and in
        one, but the bindings in every namespace of the Roles in `keep`.

        Each Role is written only if it is unchanged since it was read here."""
        prefix = list_prefix(Role, None, self.root)
        response = await self._range(prefix, prefix_range_end(prefix))
        for kv in response.kvs:
            role = self._decode(Role, kv.value, kv.mod_revision)
            bound = name in role.spec.users and role.metadata.name not in keep
            if not bound and not role.spec.bound_in(name):
                continue
            updated = role.model_copy(deep=True)
            if bound:
                updated.spec.users = [user for user in role.spec.users if user != name]
            # Bindings in one namespace go too, and a kept Role stays bound in every namespace.
            remaining = {
                namespace: [user for user in users if user != name]
                for namespace, users in role.spec.namespace_users.items()
            }
            updated.spec.namespace_users = {namespace: users for namespace, users in remaining.items() if users}
            updated.metadata.generation = role.metadata.generation + 1
            transaction.replace(updated, kv.mod_revision)
