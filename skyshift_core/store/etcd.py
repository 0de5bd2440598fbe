"""The etcd store: typed CRUD, list and watch for every kind, with resource-version preconditions.

Only the API server uses this module; controllers and the CLI go through the API. Every write is a
single etcd transaction, so a precondition and the write it guards can never be split by another
writer. An object's resource_version is the etcd mod_revision of its key, and a list's
resource_version is the revision of the read.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import random
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable, TypeVar

import aetcd
import aetcd.exceptions
import grpc
from aetcd import rpc

from skyshift_core.errors import (
    AlreadyExistsError,
    BadRequestError,
    ConflictError,
    ForbiddenError,
    GoneError,
    InvalidError,
    NotFoundError,
    RequestEntityTooLargeError,
    RequestTimeoutError,
    SkyShiftError,
    UnavailableError,
)
from skyshift_core.objects import kinds
from skyshift_core.objects.job import Job, JobPhase
from skyshift_core.objects.meta import DEFAULT_NAMESPACE, Object, utc_now
from skyshift_core.objects.misc import Namespace, User
from skyshift_core.objects.selectors import FieldRequirement, Requirement, fields_match, selector_matches
from skyshift_core.store.keys import ROOT, list_prefix, object_key, prefix_range_end
from skyshift_core.store.leases import Fence, LeaseStoreMixin
from skyshift_core.store.auth_records import SecretStoreMixin
from skyshift_core.store.tls import EtcdTls, TlsClient
from skyshift_core.store.watcher import KeyedWatcher
from skyshift_core.store.value_cache import DEFAULT_MAX_BYTES as DEFAULT_VALUE_CACHE_BYTES, ValueCache

logger = logging.getLogger(__name__)

T = TypeVar("T")

# gRPC codes after which the same request may be sent again, possibly to another member.
_TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
# Per-request deadline: a member that lost its leader can hold a request for etcd's 7 s
# request timeout, so one attempt must give up sooner and try again.
_ATTEMPT_TIMEOUT = 5.0
# gRPC's default 4 MiB message limit is below what one range read of many objects can return.
_CHANNEL_OPTIONS = {
    "grpc.max_receive_message_length": 256 * 1024 * 1024,
    # gRPC waits longer between connection attempts after each failure (1 s growing by 1.6 times, up
    # to 120 s), and fails requests at once while it waits. Channels to one address share that state,
    # so a new client does not reset it. After a 75 s etcd outage, a store needed 45 s to reach etcd
    # again. With at most 1 s between attempts it needed 1.6 s (one measurement each).
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 1000,
}
# Seconds before the first retry of a failed etcd request; each further retry waits twice as long, up to 1 s.
_FIRST_RETRY_DELAY = 0.05
# Keys per range read of a list, so no single response grows without bound whatever the limit.
_LIST_BATCH = 500
# etcd's revisions and range limits are int64 fields of its gRPC API (etcdserverpb.RangeRequest),
# so a larger number cannot even be encoded into a request.
MAX_REVISION = 2**63 - 1
# Seconds a read with a resource_version newer than etcd's revision waits for etcd to reach it, as
# Kubernetes' API server waits for its watch cache to catch up (3 s, `blockTimeout` of its watchCache).
RESOURCE_VERSION_WAIT = 3.0


def _check_job_spec_change(current: Object, merged: Object) -> None:
    """Raise InvalidError when an update changes a Job's spec in a way the controllers would ignore.

    The controllers never act on a finished Job again, and a placed Job's submitted replicas keep
    the spec they were submitted with: only a change of `replicas` reaches them. Such a change
    would be accepted and silently not applied, or applied to new replicas only. Kubernetes makes
    a Job's pod template immutable for the same reason."""
    if not isinstance(current, Job) or merged.metadata.generation == current.metadata.generation:
        return
    reference = f"{current.metadata.namespace}/{current.metadata.name}"
    if current.status.phase in (JobPhase.SUCCEEDED, JobPhase.FAILED):
        raise InvalidError(
            f"Job '{reference}' has {current.status.phase.value.lower()}, so its spec cannot change: the controllers "
            "do not run a finished Job again. To run it with the new spec, delete it and apply it again, or create a "
            "Job with another name"
        )
    if not current.status.placement and not current.status.clusters:
        return  # Nothing was submitted yet, so every field may still change.
    before = current.spec.model_dump(mode="json")
    after = merged.spec.model_dump(mode="json")
    changed = [name for name in after if name != "replicas" and after[name] != before.get(name)]
    if changed:
        fields = ", ".join(f"spec.{name}" for name in changed)
        raise InvalidError(
            f"Job '{reference}' is placed on clusters, so of its spec only spec.replicas can change, not {fields}: "
            "its submitted replicas would keep the old values. To change them, delete the Job and apply it again"
        )


def _watch_failure(error: Exception) -> str:
    """Describe why a watch stream was lost; aetcd's WatchTimeoutError carries no text."""
    if isinstance(error, aetcd.exceptions.WatchTimeoutError):
        return f"etcd did not confirm the watch within {_ATTEMPT_TIMEOUT:g} s"
    return str(error) or type(error).__name__


def _too_large(error: grpc.aio.AioRpcError) -> bool:
    """Return True when etcd, or the gRPC channel before it, refused a request for its size."""
    details = error.details() or ""
    if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in details:
        return True
    return error.code() == grpc.StatusCode.INVALID_ARGUMENT and "request is too large" in details


class TooLargeResourceVersionError(RequestTimeoutError):
    """A read asked for a resource_version that etcd has not reached; the client may retry.

    Kubernetes returns 504 with reason Timeout in the same case, and its clients recognize the
    error by the cause below, so the status, reason and cause are the same here.
    """

    def __init__(self, requested: int, current: int):
        super().__init__(
            f"Too large resource version: {requested}, current: {current}; use a resource_version "
            "returned by this API server, or leave resource_version out to read the latest state",
            details={
                "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                "retry_after_seconds": 1,
            },
        )
        self.headers = {"Retry-After": "1"}


@dataclass
class ListResult:
    items: list[Object]
    resource_version: str
    continue_token: str | None = None


class WatchEvent:
    """One change seen by a watch: its type (ADDED, MODIFIED or DELETED), the object, the revision.

    An event made from a stored value that this process encoded decodes the object only when
    `object` is first read. `object_json` then returns the stored JSON with the resource_version
    spliced in, which is what the API server's watch streams send.
    """

    __slots__ = ("type", "revision", "_object", "_model", "_value")

    def __init__(
        self,
        type: str,
        object: Object | None = None,
        revision: int = 0,
        *,
        model: type[Object] | None = None,
        value: bytes | None = None,
    ):
        if object is None and (model is None or value is None):
            raise ValueError("a WatchEvent needs an object, or a model and a stored value")
        self.type = type
        self.revision = revision
        self._object = object
        self._model = model
        self._value = value

    @property
    def object(self) -> Object:
        if self._object is None:
            self._object = Store._decode(self._model, self._value, self.revision)
        return self._object

    def object_json(self) -> bytes:
        """Return the object as JSON, with metadata.resource_version set to the event's revision."""
        if self._object is None:
            spliced = with_resource_version(self._value, self.revision)
            if spliced is not None:
                return spliced
        return self.object.model_dump_json().encode()

    def __repr__(self) -> str:
        return f"WatchEvent({self.type}, revision={self.revision})"


def _namespace_not_found(namespace: str) -> NotFoundError:
    # The details name the namespace, so that a client can tell this from a missing object.
    return NotFoundError(
        f"namespace '{namespace}' not found; create it first: skyshift create namespace {namespace}",
        details={"kind": "namespaces", "name": namespace},
    )


def uid_conflict_message(described: str, requested: str, current: str | None) -> str:
    """Return the 409 message of a write whose uid precondition names another object than the stored one."""
    return (
        f"Precondition failed: UID in precondition: {requested}, UID in object meta: {current}. {described} is "
        "another object than the request names: the uid is wrong, or the object was deleted and created "
        "again since it was read; get it again and decide anew"
    )


_METADATA = b'"metadata":{'


def with_resource_version(value: bytes, revision: int) -> bytes | None:
    """Insert `"resource_version": "<revision>"` into a stored value's top-level metadata.

    Stored values are `Store._encode` output, which starts with the string fields api_version and
    kind and then metadata. Returns None for a value of another shape, which the caller then
    decodes and encodes in full.
    """
    start = value.find(_METADATA)
    # A brace before metadata would mean that the first match is not at the top level.
    if start < 0 or value.find(b"{", 1, start) >= 0:
        return None
    cut = start + len(_METADATA)
    field = b'"resource_version":"%d"' % revision
    return value[:cut] + field + (b"" if value[cut : cut + 1] == b"}" else b",") + value[cut:]


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    """Split `http://127.0.0.1:2379` or `127.0.0.1:2379` into host and port."""
    text = endpoint.strip()
    for scheme in ("http://", "https://"):
        text = text.removeprefix(scheme)
    host, _, port = text.rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"invalid etcd endpoint {endpoint!r}: expected host:port, for example 127.0.0.1:2379")
    return host, int(port)


class Store(LeaseStoreMixin, SecretStoreMixin):
    """Async access to SkyShift's objects (and leader-election leases) in etcd.

    `endpoints` may name several members of one etcd cluster; a request that cannot reach one
    member is retried on the next until `deadline` seconds have passed. Every write accepts a
    `fence`: the write then also requires, in its own transaction, that the fence's holder still
    holds the lease, and fails with LeaseLostError otherwise. With `tls`, every connection to etcd
    uses TLS with that CA and, when given, that client certificate. Up to `value_cache_bytes` of
    recently read and written values spare the read before a write with a resource_version
    (see `skyshift_core.store.value_cache`); 0 turns that off.
    """

    def __init__(
        self,
        endpoints: list[str] | str,
        *,
        root: str = ROOT,
        deadline: float = 15.0,
        username: str | None = None,
        password: str | None = None,
        tls: EtcdTls | None = None,
        value_cache_bytes: int = DEFAULT_VALUE_CACHE_BYTES,
    ):
        if isinstance(endpoints, str):
            endpoints = [part for part in endpoints.split(",") if part.strip()]
        if not endpoints:
            raise ValueError("no etcd endpoint given: pass at least one host:port")
        self.endpoints = [parse_endpoint(endpoint) for endpoint in endpoints]
        self.root = root.rstrip("/")
        self.deadline = deadline
        self._username = username
        self._password = password
        self._tls = tls
        self._endpoint_index = 0
        self._client: aetcd.Client | None = None
        self._client_lock = asyncio.Lock()
        # Fence -> create_revision of the holder's tenure, as last read (see `LeaseStoreMixin`).
        self._fence_revisions: dict[Fence, int] = {}
        self._values = ValueCache(value_cache_bytes)
        # Values this process encoded whose transactions are in flight, by key. The watch event of
        # such a write may arrive before the transaction's response.
        self._writing: dict[bytes, bytes] = {}

    # ---- connection -------------------------------------------------------------------

    async def _connected_client(self) -> aetcd.Client:
        if self._client is not None:
            return self._client
        async with self._client_lock:
            if self._client is None:
                host, port = self.endpoints[self._endpoint_index % len(self.endpoints)]
                settings = dict(
                    host=host,
                    port=port,
                    username=self._username,
                    password=self._password,
                    timeout=_ATTEMPT_TIMEOUT,
                    options=_CHANNEL_OPTIONS,
                )
                client = TlsClient(tls=self._tls, **settings) if self._tls else aetcd.Client(**settings)
                try:
                    await client.connect()
                except (aetcd.exceptions.InvalidArgumentError, aetcd.exceptions.UnauthenticatedError) as error:
                    await self._close_quietly(client)
                    raise SkyShiftError(
                        f"etcd at {host}:{port} rejected the login of user {self._username!r}: {error}; "
                        "check the etcd user name and password"
                    ) from error
                except (aetcd.exceptions.ConnectionFailedError, aetcd.exceptions.ConnectionTimeoutError):
                    # Logging in is the first request, so an unreachable member fails here: try the next one.
                    await self._close_quietly(client)
                    self._endpoint_index += 1
                    raise
                except BaseException:
                    # Cancelled while logging in (a timed-out /readyz, for one): close the channel too.
                    await self._close_quietly(client)
                    raise
                # Watches of this process share the client's watch stream; see KeyedWatcher for why
                # they need their own watch ids.
                client._watcher = KeyedWatcher(rpc.WatchStub(client.channel), timeout=_ATTEMPT_TIMEOUT, metadata=client.metadata)
                self._client = client
            return self._client

    @staticmethod
    async def _close_quietly(client: aetcd.Client) -> None:
        try:
            await client.close()
        except Exception:  # The channel never worked; closing it is best effort.
            logger.debug("Closing an etcd client that failed to connect raised", exc_info=True)

    async def _rotate(self, failed: aetcd.Client) -> None:
        """Drop a client that failed and move to the next endpoint."""
        async with self._client_lock:
            if self._client is failed:
                self._client = None
                self._endpoint_index += 1
        try:
            await failed.close()
        except Exception:  # The channel is already broken; closing it is best effort.
            logger.debug("Closing a failed etcd client raised", exc_info=True)

    async def close(self) -> None:
        async with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def _call(self, operation: Callable[[aetcd.Client], Awaitable[T]]) -> T:
        """Run one etcd request, retrying transient failures with backoff until the deadline."""
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self.deadline
        delay = _FIRST_RETRY_DELAY
        logged_in_again = False
        while True:
            client = None
            try:
                client = await self._connected_client()
                return await operation(client)
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.OUT_OF_RANGE:
                    raise GoneError(f"the requested resource_version is too old: {error.details()}") from error
                if error.code() == grpc.StatusCode.UNAUTHENTICATED and self._username and not logged_in_again:
                    # etcd's auth tokens expire (--auth-token-ttl, 300 s by default): connect and log in again.
                    logger.info("etcd rejected the auth token (%s); logging in again", error.details())
                    logged_in_again = True
                    await self._rotate(client)
                    continue
                if _too_large(error):
                    raise RequestEntityTooLargeError(
                        f"the object is too large for etcd ({error.details()}); etcd takes at most about 1.5 MiB "
                        "per request by default: make it smaller, for example by keeping large data out of annotations"
                    ) from error
                if error.code() not in _TRANSIENT:
                    raise SkyShiftError(f"etcd request failed: {error.code().name}: {error.details()}") from error
                failure: Exception = error
            except (aetcd.exceptions.ConnectionFailedError, aetcd.exceptions.ConnectionTimeoutError) as error:
                failure = error
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if client is None or client is self._client or (task is not None and task.cancelling()):
                    raise
                # Another request failed and closed this client (`_rotate`), and gRPC cancels every call
                # still in flight on a closed channel. This task was not cancelled, so send the request again.
                failure = ConnectionError("the etcd connection was closed while the request was in flight")
            # gRPC's own text of an error carries a multi-line debug string; its details are the reason.
            reason = failure.details() if isinstance(failure, grpc.aio.AioRpcError) else str(failure)
            if loop.time() + delay > give_up_at:
                endpoints = ", ".join(f"{host}:{port}" for host, port in self.endpoints)
                raise UnavailableError(f"etcd at {endpoints} did not respond within {self.deadline:g} s: {reason}") from failure
            # The first failure of a request is a warning; its further retries are logged at debug level.
            logger.log(
                logging.WARNING if delay == _FIRST_RETRY_DELAY else logging.DEBUG,
                "etcd request failed, retrying in %.2f s (for up to %g s in all): %s", delay, self.deadline, reason,
            )  # fmt: skip
            if client is not None:
                await self._rotate(client)
            await asyncio.sleep(delay * (1 + random.random() / 2))
            delay = min(delay * 2, 1.0)

    async def ping(self) -> int:
        """Return etcd's current revision; raise UnavailableError when etcd cannot be reached."""

        async def operation(client: aetcd.Client) -> int:
            request = rpc.RangeRequest(key=f"{self.root}/".encode(), limit=1, count_only=True)
            response = await client.kvstub.Range(request, timeout=_ATTEMPT_TIMEOUT, metadata=client.metadata)
            return response.header.revision

        return await self._call(operation)

    async def check_revision(self, revision: int) -> None:
        """Raise GoneError when `revision` has been compacted, so a watch from it cannot start."""
        response = await self._range(f"{self.root}/".encode(), limit=1, revision=0)
        if revision > response.header.revision:
            return
        try:
            await self._range(f"{self.root}/".encode(), limit=1, revision=revision)
        except GoneError as error:
            raise GoneError(
                f"resource_version {revision - 1} is too old: etcd has compacted that history; "
                "list again and watch from the list's resource_version"
            ) from error

    async def wait_for_revision(self, revision: int, timeout: float | None = None) -> int:
        """Return etcd's current revision once it is at least `revision`.

        Polls etcd for up to `timeout` seconds (RESOURCE_VERSION_WAIT by default), then raises
        TooLargeResourceVersionError with the revision last seen. etcd's reads are linearizable, so
        a resource_version that an API server on this etcd returned is never newer than the current
        revision. A newer one comes from another etcd, from one restored from a backup, or from a typo.
        """
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + (RESOURCE_VERSION_WAIT if timeout is None else timeout)
        delay = 0.05
        while True:
            current = await self.ping()
            if current >= revision:
                return current
            remaining = give_up_at - loop.time()
            if remaining <= 0:
                raise TooLargeResourceVersionError(revision, current)
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.5)

    # ---- raw operations -----------------------------------------------------------------

    async def _range(self, key: bytes, range_end: bytes | None = None, *, limit: int = 0, revision: int = 0):
        async def operation(client: aetcd.Client):
            request = rpc.RangeRequest(key=key, limit=limit, revision=revision)
            if range_end is not None:
                request.range_end = range_end
            return await client.kvstub.Range(request, timeout=_ATTEMPT_TIMEOUT, metadata=client.metadata)

        return await self._call(operation)

    async def _txn(self, compare: list, success: list, failure: list | None = None):
        async def operation(client: aetcd.Client):
            request = rpc.TxnRequest(compare=compare, success=success, failure=failure or [])
            return await client.kvstub.Txn(request, timeout=_ATTEMPT_TIMEOUT, metadata=client.metadata)

        return await self._call(operation)

    async def _put_encoded(self, key: bytes, value: bytes, compare: list, failure: list | None = None):
        """Put `value`, which this process encoded, at `key` when `compare` holds; return the response.

        While the transaction runs and after it succeeds, a watch event of this value is known
        to carry the current shape of its kind (see `_watch_event`)."""
        self._writing[key] = value
        try:
            put = rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value))
            response = await self._txn(compare, [put], failure)
            if response.succeeded:
                self._values.put(key, value, response.header.revision, encoded=True)
            return response
        finally:
            if self._writing.get(key) is value:
                del self._writing[key]

    # ---- encoding -----------------------------------------------------------------------

    def _key(self, model: type[Object], namespace: str | None, name: str) -> bytes:
        return object_key(model, namespace, name, self.root)

    @staticmethod
    def _encode(obj: Object) -> bytes:
        # The resource_version is the key's mod_revision, so it is never stored in the value.
        return obj.model_dump_json(exclude={"metadata": {"resource_version"}}).encode()

    @staticmethod
    def _decode(model: type[Object], value: bytes, mod_revision: int) -> Object:
        obj = model.model_validate_json(value)
        obj.metadata.resource_version = str(mod_revision)
        return obj

    @staticmethod
    def _details(model: type[Object], name: str) -> dict[str, str]:
        """Return the Status details of an error about one object, as Kubernetes gives them: name and resource."""
        return {"name": name, "kind": model.plural}

    @staticmethod
    def _describe(model: type[Object], namespace: str | None, name: str) -> str:
        kind = model.model_fields["kind"].default
        return f"{kind} '{namespace}/{name}'" if model.namespaced else f"{kind} '{name}'"

    @staticmethod
    def parse_resource_version(resource_version: str | int | None, field_name: str = "resource_version") -> int | None:
        """Return a resource_version as an etcd revision, or None when it is absent or empty.

        Raises BadRequestError naming `field_name` (the parameter or field that carried the value) when
        the value is not an integer from 0 to MAX_REVISION.
        """
        if resource_version is None or resource_version == "":
            return None
        expected = f"expected an integer from 0 to {MAX_REVISION}"
        if isinstance(resource_version, bool) or not isinstance(resource_version, (str, int)):
            raise BadRequestError(f"invalid {field_name} {resource_version!r}: {expected}, as a string like \"42\"")
        text = str(resource_version).strip()
        # int() would also take '+5', '1_000' and non-ASCII digits, which no server ever returns.
        if not (text.isascii() and text.isdigit()):
            raise BadRequestError(f"invalid {field_name} {resource_version!r}: {expected}")
        value = int(text)
        if value > MAX_REVISION:
            raise BadRequestError(f"invalid {field_name} {resource_version!r}: {expected}")
        return value

    # ---- CRUD ---------------------------------------------------------------------------

    async def create(self, obj: Object, *, fence: Fence | None = None) -> Object:
        """Store a new object; raise AlreadyExistsError when the name is taken."""
        model = type(obj)
        namespace = (obj.metadata.namespace or DEFAULT_NAMESPACE) if model.namespaced else None
        # The transaction also checks that the namespace exists. A concurrent delete of the
        # namespace, which removes everything in it, then cannot leave this object behind.
        namespace_compare, namespace_read = [], []
        if model.namespaced and model is not Namespace and namespace != DEFAULT_NAMESPACE:
            namespace_key = self._key(Namespace, None, namespace)
            namespace_compare = [
                rpc.Compare(key=namespace_key, target=rpc.Compare.CREATE, result=rpc.Compare.GREATER, create_revision=0)
            ]
            namespace_read = [rpc.RequestOp(request_range=rpc.RangeRequest(key=namespace_key, count_only=True))]
        obj = self.prepare_new(obj)
        metadata = obj.metadata
        key = self._key(model, namespace, obj.metadata.name)
        value = self._encode(obj)
        fenced = await self.fence_compare(fence)
        retried = False
        while True:
            compare = [
                rpc.Compare(key=key, target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL, create_revision=0),
                *namespace_compare,
                *fenced,
            ]
            response = await self._put_encoded(key, value, compare, namespace_read)
            if response.succeeded:
                metadata.resource_version = str(response.header.revision)
                return obj
            if namespace_read and response.responses[0].response_range.count == 0:
                raise _namespace_not_found(namespace)
            refreshed = await self.recheck_fence(fence, fenced, retried=retried)
            if refreshed is None:
                break
            fenced, retried = refreshed, True

        # A retried request may find the object its own first attempt wrote.
        existing = await self._range(key)
        if existing.kvs and json.loads(existing.kvs[0].value)["metadata"].get("uid") == metadata.uid:
            return self._decode(model, existing.kvs[0].value, existing.kvs[0].mod_revision)
        raise AlreadyExistsError(
            f"{self._describe(model, namespace, obj.metadata.name)} already exists",
            details=self._details(model, obj.metadata.name),
        )


    async def preview_create(self, obj: Object) -> Object:
        """Check what `create` checks, without writing: return the object as `create` would store it,
        with no resource_version. Raises NotFoundError for a missing namespace and AlreadyExistsError
        for a taken name, as `create` does."""
        model = type(obj)
        namespace = (obj.metadata.namespace or DEFAULT_NAMESPACE) if model.namespaced else None
        keys = [self._key(model, namespace, obj.metadata.name)]
        if model.namespaced and model is not Namespace and namespace != DEFAULT_NAMESPACE:
            keys.append(self._key(Namespace, None, namespace))
        found = [bool((await self._range(key)).kvs) for key in keys]
        if len(found) > 1 and not found[1]:
            raise _namespace_not_found(namespace)
        if found[0]:
            raise AlreadyExistsError(
                f"{self._describe(model, namespace, obj.metadata.name)} already exists",
                details=self._details(model, obj.metadata.name),
            )
        return self.prepare_new(obj)

    async def _get_raw(self, model: type[Object], namespace: str | None, name: str):
        response = await self._range(self._key(model, namespace, name))
        if not response.kvs:
            raise NotFoundError(
                f"{self._describe(model, namespace, name)} not found", details=self._details(model, name)
            )
        kv = response.kvs[0]
        self._values.put(kv.key, kv.value, kv.mod_revision)
        return kv

    async def get(self, model: type[Object], namespace: str | None, name: str) -> Object:
        namespace = namespace if model.namespaced else None
        kv = await self._get_raw(model, namespace, name)
        return self._decode(model, kv.value, kv.mod_revision)

    async def update(
        self, obj: Object, *, subresource: str | None = None, fence: Fence | None = None, dry_run: bool = False
    ) -> Object:
        """Replace an object's spec and metadata (or only its status, with subresource="status").

        When obj.metadata.resource_version is set it must equal the stored one (else ConflictError);
        without it the update applies to whatever version is current. A change outside metadata
        and status bumps metadata.generation. Writing an unchanged object is a no-op. With
        `dry_run`, every check runs and the result is returned, but nothing is written.
        """
        model = type(obj)
        namespace = (obj.metadata.namespace or DEFAULT_NAMESPACE) if model.namespaced else None
        name = obj.metadata.name
        precondition = self.parse_resource_version(obj.metadata.resource_version)
        fenced = await self.fence_compare(fence)
        retried = False
        # With a precondition, the value cached at that version can stand in for the read (see `ValueCache`).
        use_cache = precondition is not None and not dry_run
        cached = self._values.get(self._key(model, namespace, name), precondition) if use_cache else None
        while True:
            kv = cached or await self._get_raw(model, namespace, name)
            if precondition is not None and precondition != kv.mod_revision:
                raise ConflictError(
                    self._conflict_message(model, namespace, name, precondition, kv.mod_revision),
                    details=self._details(model, name),
                )
            current = self._decode(model, kv.value, kv.mod_revision)
            if obj.metadata.uid is not None and obj.metadata.uid != current.metadata.uid:
                raise ConflictError(
                    uid_conflict_message(
                        self._describe(model, namespace, name), obj.metadata.uid, current.metadata.uid
                    ),
                    details=self._details(model, name),
                )
            merged = self._merge(current, obj, subresource)
            _check_job_spec_change(current, merged)
            if current.metadata.deletion_timestamp is not None:
                self._check_finalizers_removed_only(current, merged)
                if not merged.metadata.finalizers:
                    if dry_run:
                        return merged
                    # The last finalizer is gone, so the deletion that waited for it happens now.
                    removed = await self._delete_kv(model, kv, fenced)
                    if removed is not None:
                        merged.metadata.resource_version = str(removed)
                        return merged
                    fenced, retried = await self._next_delete_attempt(fence, fenced, retried, model, namespace, name, precondition)
                    cached = None
                    continue
            value = self._encode(merged)
            if value == kv.value:
                if cached is not None:
                    # Only a write proves that the cached version is still the stored one.
                    cached = None
                    continue
                return current
            if dry_run:
                merged.metadata.resource_version = str(kv.mod_revision)
                return merged
            compare = [rpc.Compare(key=kv.key, target=rpc.Compare.MOD, result=rpc.Compare.EQUAL, mod_revision=kv.mod_revision), *fenced]
            if cached is not None:
                compare.append(rpc.Compare(key=kv.key, target=rpc.Compare.VALUE, result=rpc.Compare.EQUAL, value=kv.value))
            response = await self._put_encoded(kv.key, value, compare)
            if response.succeeded:
                merged.metadata.resource_version = str(response.header.revision)
                return merged
            refreshed = await self.recheck_fence(fence, fenced, retried=retried)
            if refreshed is not None:
                fenced, retried = refreshed, True
                continue
            if cached is not None:
                # The cached version is gone; read the stored one and decide from it.
                self._values.discard(kv.key)
                cached = None
                continue
            if precondition is not None:
                latest = await self._get_raw(model, namespace, name)
                raise ConflictError(
                    self._conflict_message(model, namespace, name, precondition, latest.mod_revision),
                    details=self._details(model, name),
                )
            # Someone wrote between our read and our write; read again and reapply.

    def _conflict_message(self, model, namespace, name, requested: int, current: int) -> str:
        return (
            f"{self._describe(model, namespace, name)} was modified: resource_version {requested} was requested "
            f"but the current one is {current}; get the object again, reapply your change and retry"
        )

    @staticmethod
    def _merge(current: Object, new: Object, subresource: str | None) -> Object:
        if subresource == "status":
            if "status" not in type(current).model_fields:
                kind = type(current).model_fields["kind"].default
                raise BadRequestError(f"kind {kind} has no status field, so it has no status subresource to write")
            return current.model_copy(update={"status": new.status})
        if subresource is not None:
            raise BadRequestError(f"unknown subresource {subresource!r}: only 'status' can be updated")

        # Identity fields are immutable; labels and annotations come from the new object;
        # status is kept, because it is written only through the status subresource. An update
        # that does not mention finalizers keeps them, so that re-applying a manifest does not
        # drop the finalizer of a controller.
        finalizers = new.metadata.finalizers if "finalizers" in new.metadata.model_fields_set else current.metadata.finalizers
        metadata = current.metadata.model_copy(
            update={"labels": new.metadata.labels, "annotations": new.metadata.annotations, "finalizers": finalizers}
        )
        fields = {name: getattr(new, name) for name in type(new).model_fields if name not in ("metadata", "status")}
        candidate = current.model_copy(update={**fields, "metadata": metadata})
        excluded = {"metadata", "status"}
        if candidate.model_dump(mode="json", exclude=excluded) != current.model_dump(mode="json", exclude=excluded):
            metadata.generation = current.metadata.generation + 1
        return candidate

    async def delete(
        self,
        model: type[Object],
        namespace: str | None,
        name: str,
        resource_version: str | int | None = None,
        *,
        fence: Fence | None = None,
        uid: str | None = None,
    ) -> Object:
        """Delete an object and return its last state.

        With resource_version, only that version is deleted. With uid, only the object of that uid is,
        not another one created later under the same name."""
        namespace = (namespace or DEFAULT_NAMESPACE) if model.namespaced else None
        if model is Namespace and name == DEFAULT_NAMESPACE:
            # Objects created without a namespace go to 'default', so it must always exist.
            raise ForbiddenError(
                f"namespace '{DEFAULT_NAMESPACE}' cannot be deleted: it contains the objects created without a namespace"
            )
        precondition = self.parse_resource_version(resource_version)
        fenced = await self.fence_compare(fence)
        retried = False
        while True:
            kv = await self._get_raw(model, namespace, name)
            if precondition is not None and precondition != kv.mod_revision:
                raise ConflictError(
                    self._conflict_message(model, namespace, name, precondition, kv.mod_revision),
                    details=self._details(model, name),
                )
            current = self._decode(model, kv.value, kv.mod_revision)
            if uid is not None and uid != current.metadata.uid:
                described = self._describe(model, namespace, name)
                raise ConflictError(
                    uid_conflict_message(described, uid, current.metadata.uid), details=self._details(model, name)
                )
            if current.metadata.finalizers:
                marked = await self._mark_deleted(current, kv, fenced)
                if marked is not None:
                    return marked
            else:
                removed = await self._delete_kv(model, kv, fenced)
                if removed is not None:
                    current.metadata.resource_version = str(removed)
                    return current
            fenced, retried = await self._next_delete_attempt(fence, fenced, retried, model, namespace, name, precondition)

    async def _next_delete_attempt(
        self, fence: Fence | None, fenced: list, retried: bool, model: type[Object], namespace: str | None, name: str,
        precondition: int | None,
    ) -> tuple[list, bool]:
        """Return the fence compares and retried flag for the next attempt of a delete whose transaction failed.

        Raises ConflictError when the delete had a resource_version precondition, because the object
        has changed since then, and what `recheck_fence` raises when the fence's holder changed.
        """
        refreshed = await self.recheck_fence(fence, fenced, retried=retried)
        if refreshed is not None:
            return refreshed, True
        if precondition is not None:
            latest = await self._get_raw(model, namespace, name)
            raise ConflictError(
                self._conflict_message(model, namespace, name, precondition, latest.mod_revision),
                details=self._details(model, name),
            )
        return fenced, retried

    async def _mark_deleted(self, current: Object, kv, fenced: list) -> Object | None:
        """Set the deletion_timestamp of an object that has finalizers, and return it.

        An object already marked is returned unchanged, as Kubernetes returns it for a second delete.
        Returns None when the object changed since `kv` was read.
        """
        if current.metadata.deletion_timestamp is not None:
            return current
        marked = current.model_copy(update={"metadata": current.metadata.model_copy(update={"deletion_timestamp": utc_now()})})
        compare = [rpc.Compare(key=kv.key, target=rpc.Compare.MOD, result=rpc.Compare.EQUAL, mod_revision=kv.mod_revision), *fenced]
        response = await self._put_encoded(kv.key, self._encode(marked), compare)
        if not response.succeeded:
            return None
        marked.metadata.resource_version = str(response.header.revision)
        return marked

    async def _delete_kv(self, model: type[Object], kv, fenced: list) -> int | None:
        """Delete the object read as `kv`, with what goes with it; return the revision of the delete.

        Returns None when the object changed since it was read.
        """
        name = json.loads(kv.value)["metadata"]["name"]
        compare = [rpc.Compare(key=kv.key, target=rpc.Compare.MOD, result=rpc.Compare.EQUAL, mod_revision=kv.mod_revision), *fenced]
        operations = [rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=kv.key))]
        if model is User:
            # The user's password hash and tokens, and their Role bindings, go in the same transaction.
            cleanup_compares, cleanup_operations = await self.user_cleanup(name)
            compare.extend(cleanup_compares)
            operations.extend(cleanup_operations)
        if model is Namespace:
            # The namespace and everything in it go in one transaction.
            # NOTE: the objects in the namespace go at once, without waiting for their own finalizers.
            for kind in kinds().values():
                if kind.namespaced:
                    prefix = list_prefix(kind, name, self.root)
                    operations.append(
                        rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=prefix, range_end=prefix_range_end(prefix)))
                    )
        response = await self._txn(compare, operations)
        if not response.succeeded:
            return None
        self._values.discard(kv.key)
        return response.header.revision

    def _check_finalizers_removed_only(self, current: Object, merged: Object) -> None:
        added = sorted(set(merged.metadata.finalizers) - set(current.metadata.finalizers))
        if added:
            model = type(current)
            raise InvalidError(
                f"{self._describe(model, current.metadata.namespace, current.metadata.name)} is being deleted, "
                f"so finalizers can only be removed, not added: {', '.join(added)}"
            )

    # ---- list ---------------------------------------------------------------------------

    async def list(
        self,
        model: type[Object],
        namespace: str | None = None,
        *,
        selector: tuple[Requirement, ...] = (),
        field_selector: tuple[FieldRequirement, ...] = (),
        limit: int | None = None,
        continue_token: str | None = None,
        revision: int | None = None,
    ) -> ListResult:
        """List objects, optionally filtered by label and field selectors and split into pages.

        Every page of one listing reads etcd at the same revision, so a paginated list is a
        consistent snapshot; a continue token whose revision was compacted raises GoneError. With
        `revision`, the first page reads the state at that etcd revision (GoneError once compacted).
        """
        prefix, range_end = self._key_range(model, namespace, field_selector)
        exact = revision
        start, revision = prefix, revision or 0
        if continue_token:
            if exact:
                raise BadRequestError("a list takes a continue token or a revision to read at, not both")
            start, revision = self._decode_continue(continue_token, prefix)
        if limit is not None and not 0 <= limit <= MAX_REVISION:
            raise BadRequestError(f"invalid limit {limit}: expected an integer from 0 to {MAX_REVISION}, 0 for no limit")
        wanted = limit or 0
        filtered = bool(selector or field_selector)

        items: list[Object] = []
        while True:
            batch = min(wanted - len(items), _LIST_BATCH) if wanted else _LIST_BATCH
            if wanted and filtered:
                batch = max(batch, 64)  # Read ahead when a selector may skip most keys.
            try:
                response = await self._range(start, range_end, limit=batch, revision=revision)
            except GoneError as error:
                if exact:
                    raise GoneError(
                        f"resource_version {exact} is too old to list exactly: etcd has compacted its history up to "
                        "a later revision; list without resourceVersionMatch=Exact to read the current state"
                    ) from error
                # etcd reports a future revision with the same gRPC code as a compacted one.
                current = await self.ping()
                if revision > current:
                    raise BadRequestError(
                        f"invalid continue token: it refers to revision {revision}, but etcd is at revision {current}; "
                        "pass the token from the previous list response unchanged"
                    ) from error
                raise GoneError(
                    f"the continue token refers to revision {revision}, which etcd has compacted; list again without it"
                ) from error
            revision = revision or response.header.revision
            last_key = None
            for kv in response.kvs:
                if wanted and len(items) >= wanted:
                    break
                last_key = kv.key
                self._values.put(kv.key, kv.value, kv.mod_revision)
                obj = self._decode(model, kv.value, kv.mod_revision)
                if selector_matches(selector, obj.metadata.labels) and fields_match(field_selector, obj):
                    items.append(obj)
            exhausted = last_key is None or (not response.more and last_key == response.kvs[-1].key)
            if exhausted:
                return ListResult(items, str(revision), None)
            start = last_key + b"\0"
            if wanted and len(items) >= wanted:
                return ListResult(items, str(revision), self._encode_continue(start, revision))

    def _key_range(
        self, model: type[Object], namespace: str | None, field_selector: tuple[FieldRequirement, ...]
    ) -> tuple[bytes, bytes]:
        """Return the first key and the range end that a list or watch reads.

        An equality on `metadata.namespace` narrows a read across namespaces to that namespace. An
        equality on `metadata.name` narrows a read within one namespace, or of a cluster-scoped
        kind, to one key. The caller still applies the whole selector to every object read.
        """
        equal = {requirement.field: requirement.value for requirement in field_selector if requirement.operator == "="}
        if model.namespaced and not namespace:
            namespace = equal.get("metadata.namespace") or None
        name = equal.get("metadata.name")
        if name and (namespace or not model.namespaced):
            key = object_key(model, namespace, name, self.root)
            return key, key + b"\0"
        prefix = list_prefix(model, namespace if model.namespaced else None, self.root)
        return prefix, prefix_range_end(prefix)

    @staticmethod
    def _encode_continue(start: bytes, revision: int) -> str:
        payload = json.dumps({"start": base64.b64encode(start).decode(), "rv": revision}).encode()
        return base64.urlsafe_b64encode(payload).decode()

    @staticmethod
    def _decode_continue(token: str, prefix: bytes) -> tuple[bytes, int]:
        invalid = "invalid continue token: pass the token from the previous list response unchanged"
        try:
            payload = json.loads(base64.urlsafe_b64decode(token.encode()))
            start, revision = base64.b64decode(payload["start"]), payload["rv"]
        except (ValueError, KeyError, TypeError, binascii.Error) as error:
            raise BadRequestError(invalid) from error
        # The revision goes to etcd as an int64, and a token that this server made contains one above 0.
        if isinstance(revision, bool) or not isinstance(revision, int) or not 0 < revision <= MAX_REVISION:
            raise BadRequestError(invalid)
        if not start.startswith(prefix):
            raise BadRequestError("invalid continue token: it belongs to a different list request")
        return start, revision

    # ---- watch --------------------------------------------------------------------------

    async def watch(
        self,
        model: type[Object],
        namespace: str | None = None,
        *,
        resource_version: str | int | None = None,
        selector: tuple[Requirement, ...] = (),
        field_selector: tuple[FieldRequirement, ...] = (),
        reconnect_deadline: float = 30.0,
    ) -> AsyncIterator[WatchEvent]:
        """Yield every change after `resource_version`, exactly once and in revision order.

        Without a resource_version the current objects come first as ADDED events, as in
        Kubernetes. With a label or field selector, an object that stops matching yields DELETED
        and one that starts matching yields ADDED. Raises GoneError when the version has been compacted.
        """
        prefix, range_end = self._key_range(model, namespace, field_selector)
        start_after = self.parse_resource_version(resource_version)
        if not start_after:
            listing = await self.list(model, namespace, selector=selector, field_selector=field_selector)
            start_after = int(listing.resource_version)
            for item in listing.items:
                yield WatchEvent("ADDED", item, int(item.metadata.resource_version))

        loop = asyncio.get_running_loop()
        last_revision = start_after
        # Loop time at which the stream was lost, or None while the watch streams.
        interrupted_at: float | None = None
        while True:
            client = await self._connected_client()
            stream = None
            try:
                stream = await client.watch(
                    prefix, range_end=range_end, start_revision=last_revision + 1, prev_kv=True
                )
                if interrupted_at is not None:
                    logger.info(
                        "etcd watch of %s resubscribed from revision %d after %.1f s",
                        prefix.decode(errors="replace"), last_revision + 1, loop.time() - interrupted_at,
                    )  # fmt: skip
                    interrupted_at = None
                async for raw in stream:
                    event = self._watch_event(model, raw, selector, field_selector)
                    last_revision = raw.kv.mod_revision
                    if event is not None:
                        yield event
            except aetcd.exceptions.RevisionCompactedError as error:
                raise GoneError(
                    f"resource_version {last_revision} is too old: etcd compacted history up to revision "
                    f"{error.compacted_revision}; list again and watch from the list's resource_version"
                ) from error
            except (
                aetcd.exceptions.ConnectionFailedError,
                aetcd.exceptions.ConnectionTimeoutError,
                aetcd.exceptions.WatchTimeoutError,
                # gRPC reports a stream cut by a restarting etcd as INTERNAL ("Stream removed").
                aetcd.exceptions.InternalError,
            ) as error:
                # The stream died with the connection; subscribe again after the last delivered revision.
                reason = _watch_failure(error)
                watched = prefix.decode(errors="replace")
                if interrupted_at is None:
                    interrupted_at = loop.time()
                    # One line per outage: the attempts every 0.2 s are logged at debug level.
                    logger.warning("etcd watch of %s interrupted, resubscribing: %s", watched, reason)
                elif loop.time() - interrupted_at > reconnect_deadline:
                    raise UnavailableError(
                        f"lost the etcd watch of {watched} and could not resubscribe within {reconnect_deadline:g} s: "
                        f"{reason}"
                    ) from error
                else:
                    logger.debug("etcd watch of %s still interrupted: %s", watched, reason)
                await self._rotate(client)
                await asyncio.sleep(0.2)
            finally:
                if stream is not None:
                    await self._cancel_quietly(stream)

    @staticmethod
    async def _cancel_quietly(stream) -> None:
        try:
            await stream.cancel()
        except Exception:  # The stream may already be gone with its connection.
            logger.debug("Cancelling an etcd watch raised", exc_info=True)

    def _watch_event(
        self,
        model: type[Object],
        raw,
        selector: tuple[Requirement, ...],
        field_selector: tuple[FieldRequirement, ...] = (),
    ) -> WatchEvent | None:
        revision = raw.kv.mod_revision
        filtered = bool(selector or field_selector)
        if raw.kind == "DELETE":
            self._values.discard(raw.kv.key)
            if raw.prev_kv is None or not raw.prev_kv.value:  # Compacted away; nothing to report.
                return None
            previous = self._decode(model, raw.prev_kv.value, revision)
            if not (selector_matches(selector, previous.metadata.labels) and fields_match(field_selector, previous)):
                return None
            return WatchEvent("DELETED", previous, revision)

        # A value that this process encoded has every field of this version, so a watch without a
        # selector sends it as stored. Any other value, possibly written by an older version, is
        # decoded, which fills in the defaults of fields added since, as a GET does.
        encoded_here = self._values.encoded_here(raw.kv.key, revision) or self._writing.get(raw.kv.key) == raw.kv.value
        self._values.put(raw.kv.key, raw.kv.value, revision)
        if filtered or not encoded_here:
            current = self._decode(model, raw.kv.value, revision)
            matches = selector_matches(selector, current.metadata.labels) and fields_match(field_selector, current)
        else:
            current = None
            matches = True
        previous_matched = False
        if raw.prev_kv is not None and raw.prev_kv.value and raw.kv.version > 1:
            if filtered:
                # Field selectors read the previous version's decoded JSON, which has the same paths.
                previous = json.loads(raw.prev_kv.value)
                previous_labels = previous["metadata"].get("labels") or {}
                previous_matched = selector_matches(selector, previous_labels) and fields_match(field_selector, previous)
            else:
                previous_matched = True  # An empty selector matches every version; no need to parse the old one.
        if matches:
            event_type = "MODIFIED" if previous_matched else "ADDED"
            return WatchEvent(event_type, current, revision, model=model, value=raw.kv.value)
        if previous_matched:
            return WatchEvent("DELETED", current, revision)
        return None

    async def compact(self, revision: int) -> None:
        """Compact etcd history up to `revision` (tests and maintenance)."""

        async def operation(client: aetcd.Client) -> None:
            await client.compact(revision, physical=True)

        await self._call(operation)
