"""In-memory object store of the fake API server: the role etcd and the registry play in Kubernetes.

One global resource version counts every write. Each write appends a watch event to a bounded
history. Watches that resume from a resource version and lists at an exact version are served
from that history, and versions older than it raise 410 Gone. Deletion follows Kubernetes:
finalizers and graceful pod deletion defer removal, and propagation policies cascade to
dependents through `ownerReferences`. Every method is thread-safe, because the HTTP server, the
simulated kubelet and tests call it from different threads.
"""

from __future__ import annotations

import base64
import binascii
import collections
import copy
import json
import logging
import random
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from . import errors
from .admission import Admission
from .patch import apply_patch
from .resources import ALL_RESOURCES, NAMESPACES, PODS, ResourceType
from .selectors import FieldSelector, LabelSelector

logger = logging.getLogger(__name__)

INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
_NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_SYSTEM_METADATA = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "selfLink",
    "managedFields",
)
_TERMINAL_POD_PHASES = ("Succeeded", "Failed")
FOREGROUND_FINALIZER = "foregroundDeletion"

Key = tuple[str, str]  # (namespace, name); namespace is "" for cluster-scoped kinds


def format_timestamp(moment: datetime) -> str:
    """Format a time as Kubernetes does in metadata: RFC 3339, UTC, whole seconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_timestamp() -> str:
    return format_timestamp(datetime.now(UTC))


def random_suffix(length: int = 5) -> str:
    """Return a name suffix like the ones generateName and controllers append."""
    return "".join(random.choice(_NAME_SUFFIX_ALPHABET) for _ in range(length))


def _key(obj: dict[str, Any]) -> Key:
    metadata = obj["metadata"]
    return metadata.get("namespace", ""), metadata["name"]


def _stripped_of_version(obj: dict[str, Any]) -> dict[str, Any]:
    clone = copy.deepcopy(obj)
    clone["metadata"].pop("resourceVersion", None)
    return clone


@dataclass(frozen=True)
class WatchEvent:
    """One committed write. `obj` and `previous` are snapshots and are never mutated."""

    type: str  # ADDED, MODIFIED or DELETED
    resource: ResourceType
    obj: dict[str, Any]
    previous: dict[str, Any] | None
    resource_version: int


@dataclass(eq=False)
class Watcher:
    """An open watch: the events it selects go to `deliver` as (type, object) pairs."""

    resource: ResourceType
    namespace: str | None
    label_selector: LabelSelector
    field_selector: FieldSelector
    deliver: Callable[[tuple[str, dict[str, Any]] | None], None]
    closed: bool = field(default=False)

    def _matches(self, obj: dict[str, Any] | None) -> bool:
        if obj is None:
            return False
        if self.namespace is not None and obj["metadata"].get("namespace") != self.namespace:
            return False
        if not self.label_selector.matches(obj["metadata"].get("labels")):
            return False
        fields = {name: getter(obj) for name, getter in self.resource.selectable_fields().items()}
        return self.field_selector.matches(fields)

    def translate(self, event: WatchEvent) -> tuple[str, dict[str, Any]] | None:
        """Return the event in the form this watcher receives it, or None to skip it.

        As in kube-apiserver, an object that starts matching the selectors arrives as ADDED and
        one that stops matching leaves as DELETED.
        """
        if event.resource is not self.resource:
            return None
        matches_now = self._matches(event.obj)
        if event.type == "ADDED":
            return ("ADDED", event.obj) if matches_now else None
        matched_before = self._matches(event.previous)
        if event.type == "DELETED":
            return ("DELETED", event.obj) if matched_before or matches_now else None
        if matches_now and matched_before:
            return ("MODIFIED", event.obj)
        if matches_now:
            return ("ADDED", event.obj)
        if matched_before:
            return ("DELETED", event.obj)
        return None


class ObjectStore:
    """Objects of every served kind, the resource version counter and the watch history."""

    def __init__(self, history_size: int = 1000) -> None:
        if history_size < 1:
            raise ValueError(f"history_size must be at least 1, got {history_size}")
        self._lock = threading.RLock()
        self._objects: dict[ResourceType, dict[Key, dict[str, Any]]] = {r: {} for r in ALL_RESOURCES}
        self._resource_version = 0
        self._history: collections.deque[WatchEvent] = collections.deque(maxlen=history_size)
        # Watches and exact lists need every event after their version; those up to here are gone.
        self._compacted_version = 0
        self._watchers: set[Watcher] = set()
        self._write_listeners: list[Callable[[WatchEvent], None]] = []
        self.admission = Admission()
        for name in INITIAL_NAMESPACES:
            self.create(NAMESPACES, None, {"metadata": {"name": name}})

    # Reading

    @property
    def resource_version(self) -> int:
        with self._lock:
            return self._resource_version

    @property
    def compacted_resource_version(self) -> int:
        """The newest resource version that watches and exact lists can no longer start from."""
        with self._lock:
            return self._compacted_version

    def try_get(self, resource: ResourceType, namespace: str | None, name: str) -> dict[str, Any] | None:
        with self._lock:
            obj = self._objects[resource].get((namespace or "", name))
            return copy.deepcopy(obj) if obj is not None else None

    def get(self, resource: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self.try_get(resource, namespace, name)
        if obj is None:
            raise errors.not_found(resource.group, resource.plural, name)
        return obj

    def find_by_uid(self, uid: str) -> tuple[ResourceType, dict[str, Any]] | None:
        with self._lock:
            for resource, objects in self._objects.items():
                for obj in objects.values():
                    if obj["metadata"]["uid"] == uid:
                        return resource, copy.deepcopy(obj)
        return None

    def select(
        self,
        resource: ResourceType,
        namespace: str | None = None,
        label_selector: LabelSelector | None = None,
        field_selector: FieldSelector | None = None,
    ) -> list[dict[str, Any]]:
        """Return copies of the current objects that match, ordered by namespace and name."""
        with self._lock:
            return self._filter(self._objects[resource], resource, namespace, label_selector, field_selector)

    def _filter(
        self,
        objects: dict[Key, dict[str, Any]],
        resource: ResourceType,
        namespace: str | None,
        label_selector: LabelSelector | None,
        field_selector: FieldSelector | None,
    ) -> list[dict[str, Any]]:
        watcher = Watcher(
            resource, namespace, label_selector or LabelSelector(), field_selector or FieldSelector(), lambda _: None
        )
        return [copy.deepcopy(objects[key]) for key in sorted(objects) if watcher._matches(objects[key])]

    def list(
        self,
        resource: ResourceType,
        namespace: str | None = None,
        label_selector: LabelSelector | None = None,
        field_selector: FieldSelector | None = None,
        resource_version: str | None = None,
        resource_version_match: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> dict[str, Any]:
        """Return a `<Kind>List` with list-request semantics (versions, paging, 410 on too old)."""
        with self._lock:
            snapshot_version = self._resource_version
            start_after: Key | None = None
            if continue_token:
                snapshot_version, start_after = self._decode_continue(continue_token)
            elif resource_version_match == "Exact":
                snapshot_version = self._parse_version(resource_version)
                if snapshot_version > self._resource_version:
                    raise errors.too_large_resource_version(snapshot_version, self._resource_version)
            elif resource_version not in (None, "", "0"):
                requested = self._parse_version(resource_version)
                if requested > self._resource_version:
                    raise errors.too_large_resource_version(requested, self._resource_version)
            objects = self._snapshot(resource, snapshot_version)
            items = self._filter(objects, resource, namespace, label_selector, field_selector)
        if start_after is not None:
            items = [item for item in items if _key(item) > start_after]
        metadata: dict[str, Any] = {"resourceVersion": str(snapshot_version)}
        if limit and len(items) > limit:
            remaining = len(items) - limit
            items = items[:limit]
            metadata["continue"] = self._encode_continue(snapshot_version, _key(items[-1]))
            metadata["remainingItemCount"] = remaining
        for item in items:
            item.pop("kind", None)
            item.pop("apiVersion", None)
        return {"kind": resource.list_kind, "apiVersion": resource.api_version, "metadata": metadata, "items": items}

    @staticmethod
    def _parse_version(value: str | None) -> int:
        try:
            version = int(value or "")
        except ValueError:
            raise errors.bad_request(
                f'invalid resource version "{value}": expected a resource version returned by the server'
            ) from None
        if version < 0:
            raise errors.bad_request(f'invalid resource version "{value}": it must not be negative')
        return version

    @staticmethod
    def _encode_continue(version: int, last: Key) -> str:
        token = {"v": "meta.k8s.io/v1", "rv": version, "start": "/".join(last) + "\u0000"}
        return base64.urlsafe_b64encode(json.dumps(token).encode()).decode()

    def _decode_continue(self, token: str) -> tuple[int, Key]:
        try:
            decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
            namespace, name = decoded["start"].rstrip("\u0000").split("/", 1)
            return int(decoded["rv"]), (namespace, name)
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise errors.bad_request(
                f"invalid continue token {token!r}: use the token from the previous list response"
            ) from None

    def _snapshot(self, resource: ResourceType, version: int) -> dict[Key, dict[str, Any]]:
        """Return the objects of `resource` as they were at `version`, rebuilt from the history."""
        objects = dict(self._objects[resource])
        if version == self._resource_version:
            return objects
        if version < self._compacted_version:
            raise errors.gone(
                "The provided continue parameter or resource version is too old to display a consistent "
                f"list result (requested {version}, oldest available {self._compacted_version + 1}). "
                "Start a new list without resourceVersion or continue."
            )
        for event in reversed(self._history):
            if event.resource_version <= version:
                break
            if event.resource is not resource:
                continue
            key = _key(event.obj)
            if event.type == "ADDED":
                objects.pop(key, None)
            elif event.previous is not None:
                objects[key] = event.previous
        return objects

    # Watching

    def open_watch(
        self,
        resource: ResourceType,
        namespace: str | None,
        label_selector: LabelSelector,
        field_selector: FieldSelector,
        resource_version: str | None,
        deliver: Callable[[tuple[str, dict[str, Any]] | None], None],
        send_initial_events: bool | None = None,
    ) -> tuple[Watcher, list[tuple[str, dict[str, Any]]], int]:
        """Register a watcher and return it with the events it must send first.

        Without a resource version (or with "0") the initial events are ADDED events for the
        current objects. With a version they replay the history after it. The third value is the
        resource version at which the initial events end. Raises ApiError 410 if the history no
        longer reaches back to the requested version.
        """
        watcher = Watcher(resource, namespace, label_selector, field_selector, deliver)
        with self._lock:
            initial: list[tuple[str, dict[str, Any]]] = []
            if send_initial_events or resource_version in (None, "", "0"):
                if send_initial_events is not False:
                    initial = [
                        ("ADDED", obj) for obj in self.select(resource, namespace, label_selector, field_selector)
                    ]
            else:
                version = self._parse_version(resource_version)
                if version > self._resource_version:
                    raise errors.too_large_resource_version(version, self._resource_version)
                if version < self._compacted_version:
                    raise errors.gone(f"too old resource version: {version} ({self._compacted_version + 1})")
                for event in self._history:
                    if event.resource_version > version:
                        translated = watcher.translate(event)
                        if translated is not None:
                            initial.append(translated)
            self._watchers.add(watcher)
            return watcher, initial, self._resource_version

    def close_watch(self, watcher: Watcher) -> None:
        with self._lock:
            watcher.closed = True
            self._watchers.discard(watcher)

    def close_all_watches(self) -> None:
        """End every open watch: each watcher receives None, which means "close the stream"."""
        with self._lock:
            watchers = list(self._watchers)
            self._watchers.clear()
        for watcher in watchers:
            watcher.closed = True
            watcher.deliver(None)

    def request_bookmark(self, watcher: Watcher) -> None:
        """Queue a ("BOOKMARK", version) item for `watcher` behind every event it was sent so far."""
        with self._lock:
            if not watcher.closed:
                watcher.deliver(("BOOKMARK", self._resource_version))

    def compact(self) -> int:
        """Drop the whole watch history, like an etcd compaction, and return the compacted version.

        Afterwards a watch or exact list at any earlier version gets 410 Gone.
        """
        with self._lock:
            self._history.clear()
            self._compacted_version = self._resource_version
            return self._compacted_version

    def add_write_listener(self, listener: Callable[[WatchEvent], None]) -> None:
        """Call `listener` (inside the store lock, so it must be quick) after every committed write."""
        with self._lock:
            self._write_listeners.append(listener)

    def _commit(
        self, event_type: str, resource: ResourceType, obj: dict[str, Any], previous: dict[str, Any] | None
    ) -> dict[str, Any]:
        self._resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self._resource_version)
        key = _key(obj)
        if event_type == "DELETED":
            self._objects[resource].pop(key, None)
        else:
            self._objects[resource][key] = obj
        snapshot = copy.deepcopy(obj)
        event = WatchEvent(event_type, resource, snapshot, previous, self._resource_version)
        if len(self._history) == self._history.maxlen:
            self._compacted_version = self._history[0].resource_version
        self._history.append(event)
        for watcher in list(self._watchers):
            translated = watcher.translate(event)
            if translated is not None:
                watcher.deliver(translated)
        for listener in self._write_listeners:
            listener(event)
        logger.debug(
            "%s %s %s/%s at resource version %d", event_type, resource.kind, key[0], key[1], self._resource_version
        )
        return copy.deepcopy(obj)

    # Writing

    def _check_body(self, resource: ResourceType, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise errors.bad_request(f"the request body must be a JSON object describing a {resource.kind}")
        obj = copy.deepcopy(body)
        if obj.get("kind") not in (None, "", resource.kind):
            raise errors.bad_request(
                f"the kind in the request body ({obj['kind']}) does not match the expected kind ({resource.kind})"
            )
        if obj.get("apiVersion") not in (None, "", resource.api_version):
            raise errors.bad_request(
                f"the API version in the data ({obj['apiVersion']}) does not match the expected API version "
                f"({resource.api_version})"
            )
        obj["kind"], obj["apiVersion"] = resource.kind, resource.api_version
        if not isinstance(obj.setdefault("metadata", {}), dict):
            raise errors.bad_request("metadata must be a JSON object")
        return obj

    def _check_namespace(
        self, resource: ResourceType, namespace: str | None, obj: dict[str, Any], creating: bool
    ) -> None:
        metadata = obj["metadata"]
        if not resource.namespaced:
            metadata.pop("namespace", None)
            return
        if not namespace:
            raise errors.bad_request(f"{resource.plural} are namespaced: the request must name a namespace")
        if metadata.get("namespace") not in (None, "", namespace):
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        metadata["namespace"] = namespace
        if creating:
            owner = self._objects[NAMESPACES].get(("", namespace))
            if owner is None:
                raise errors.not_found("", "namespaces", namespace)
            if owner["metadata"].get("deletionTimestamp"):
                raise errors.forbidden(
                    resource.group,
                    resource.plural,
                    metadata.get("name", ""),
                    f'{resource.plural} "{metadata.get("name", "")}" is forbidden: unable to create new content '
                    f"in namespace {namespace} because it is being terminated",
                )

    def create(self, resource: ResourceType, namespace: str | None, body: Any, dry_run: bool = False) -> dict[str, Any]:
        """Create an object; raise 409 AlreadyExists if the name is taken, 422 if it is invalid."""
        obj = self._check_body(resource, body)
        metadata = obj["metadata"]
        for field_name in _SYSTEM_METADATA:
            metadata.pop(field_name, None)
        with self._lock:
            self._check_namespace(resource, namespace, obj, creating=True)
            if not metadata.get("name"):
                prefix = metadata.get("generateName")
                if not prefix:
                    raise errors.invalid(
                        resource.group,
                        resource.kind,
                        "",
                        [
                            {
                                "reason": "FieldValueRequired",
                                "message": "Required value: name or generateName is required",
                                "field": "metadata.name",
                            }
                        ],
                    )
                for _ in range(10):
                    metadata["name"] = prefix + random_suffix()
                    if (namespace or "", metadata["name"]) not in self._objects[resource]:
                        break
            metadata["uid"] = str(uuid.uuid4())
            metadata["creationTimestamp"] = now_timestamp()
            metadata["generation"] = 1
            self.admission.admit_create(resource, obj)
            if _key(obj) in self._objects[resource]:
                raise errors.already_exists(resource.group, resource.plural, metadata["name"])
            if dry_run:
                return obj
            return self._commit("ADDED", resource, obj, None)

    def update(
        self,
        resource: ResourceType,
        namespace: str | None,
        name: str,
        body: Any,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Replace an object (PUT); raise 409 Conflict if the body's resourceVersion is stale.

        An update of the main resource keeps the stored status, and an update of the status
        subresource changes only the status, as in kube-apiserver.
        """
        new = self._check_body(resource, body)
        with self._lock:
            old = self._objects[resource].get((namespace or "", name))
            if old is None:
                raise errors.not_found(resource.group, resource.plural, name)
            if new["metadata"].get("name") not in (None, name):
                raise errors.bad_request(
                    f"the name of the object ({new['metadata']['name']}) does not match the name on the URL ({name})"
                )
            new["metadata"]["name"] = name
            self._check_namespace(resource, namespace, new, creating=False)
            self._check_preconditions(resource, old, new["metadata"].get("uid"), new["metadata"].get("resourceVersion"))
            if subresource == "status":
                result = copy.deepcopy(old)
                result["status"] = new.get("status")
                if result["status"] is None:
                    result.pop("status")
            else:
                result = new
                for field_name in (
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "generation",
                ):
                    if field_name in old["metadata"]:
                        result["metadata"][field_name] = old["metadata"][field_name]
                    else:
                        result["metadata"].pop(field_name, None)
                if "status" in old:
                    result["status"] = copy.deepcopy(old["status"])
                else:
                    result.pop("status", None)
                self.admission.admit_update(resource, old, result)
                if result.get("spec") != old.get("spec"):
                    result["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
            return self._write_update(resource, old, result, dry_run)

    def _check_preconditions(
        self, resource: ResourceType, old: dict[str, Any], uid: str | None, version: str | None
    ) -> None:
        name = old["metadata"]["name"]
        if uid and uid != old["metadata"]["uid"]:
            raise errors.conflict(
                resource.group,
                resource.plural,
                name,
                f"Precondition failed: UID in precondition: {uid}, UID in object meta: {old['metadata']['uid']}",
            )
        if version and version != old["metadata"]["resourceVersion"]:
            raise errors.conflict(resource.group, resource.plural, name, errors.STALE_OBJECT_CAUSE)

    def _write_update(
        self, resource: ResourceType, old: dict[str, Any], result: dict[str, Any], dry_run: bool
    ) -> dict[str, Any]:
        # A write that changes nothing keeps the resource version and sends no event, as etcd3 storage does.
        if _stripped_of_version(result) == _stripped_of_version(old):
            return copy.deepcopy(old)
        if dry_run:
            return result
        written = self._commit("MODIFIED", resource, result, copy.deepcopy(old))
        if self._removable(resource, written):
            self._remove(resource, written)
        return written

    def patch(
        self,
        resource: ResourceType,
        namespace: str | None,
        name: str,
        patch_body: Any,
        content_type: str,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Apply a JSON, merge or strategic merge patch; a resourceVersion in the patch is a precondition."""
        with self._lock:
            current = self.get(resource, namespace, name)
            patched = apply_patch(current, patch_body, content_type)
            if not isinstance(patched, dict):
                raise errors.bad_request(f"the patched {resource.kind} is not a JSON object: {patched!r}")
            patched.setdefault("metadata", {})
            if patched["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
                requested = patched["metadata"].get("resourceVersion")
                if requested:
                    raise errors.conflict(resource.group, resource.plural, name, errors.STALE_OBJECT_CAUSE)
            patched["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            return self.update(resource, namespace, name, patched, subresource=subresource, dry_run=dry_run)

    def mutate(
        self,
        resource: ResourceType,
        namespace: str | None,
        name: str,
        change: Callable[[dict[str, Any]], None],
        subresource: str | None = None,
    ) -> dict[str, Any] | None:
        """Apply `change` to a copy of the stored object and write it; return None if it is gone.

        Controllers use this for read-modify-write without conflicts: the store lock is held
        throughout, so `change` must not call back into other threads.
        """
        with self._lock:
            current = self.try_get(resource, namespace, name)
            if current is None:
                return None
            change(current)
            return self.update(resource, namespace, name, current, subresource=subresource)

    def bind(self, namespace: str, name: str, node_name: str) -> dict[str, Any]:
        """Assign a pod to a node, as the pods/binding subresource does; 409 if it is already bound."""
        with self._lock:
            old = self.get(PODS, namespace, name)
            if old["spec"].get("nodeName"):
                raise errors.conflict(
                    "", "pods", name, f'pod {name} is already assigned to node "{old["spec"]["nodeName"]}"'
                )
            if old["metadata"].get("deletionTimestamp"):
                raise errors.conflict("", "pods", name, f"pod {name} is being deleted, cannot be assigned to a host")
            pod = copy.deepcopy(old)
            pod["spec"]["nodeName"] = node_name
            status = pod.setdefault("status", {})
            conditions = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
            conditions.insert(
                0,
                {
                    "type": "PodScheduled",
                    "status": "True",
                    "lastProbeTime": None,
                    "lastTransitionTime": now_timestamp(),
                },
            )
            status["conditions"] = conditions
            return self._commit("MODIFIED", PODS, pod, old)

    # Deleting

    def delete(
        self,
        resource: ResourceType,
        namespace: str | None,
        name: str,
        propagation_policy: str | None = None,
        grace_period_seconds: int | None = None,
        preconditions: dict[str, Any] | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Delete an object and return what kube-apiserver returns: the object, or a Success Status.

        Pods bound to a node and still running are deleted gracefully: they get a
        deletionTimestamp and stay until the kubelet confirms, unless grace_period_seconds is 0.
        """
        policies = ("Orphan", "Background", "Foreground")
        if propagation_policy not in (None, *policies):
            raise errors.bad_request(
                f"invalid propagationPolicy {propagation_policy!r}: expected one of {', '.join(policies)}"
            )
        with self._lock:
            obj = self.get(resource, namespace, name)
            preconditions = preconditions or {}
            self._check_preconditions(resource, obj, preconditions.get("uid"), preconditions.get("resourceVersion"))
            if dry_run:
                return obj
            policy = propagation_policy or resource.default_propagation
            if resource is NAMESPACES:
                return self._terminate_namespace(obj)
            metadata = obj["metadata"]
            if metadata.get("deletionTimestamp"):
                if resource is PODS and grace_period_seconds == 0:
                    return self._remove(resource, obj)
                return obj
            if policy == "Orphan":
                self._orphan_dependents(obj)
            dependents = self._dependents(metadata["uid"])
            finalizers = list(metadata.get("finalizers") or [])
            if policy == "Foreground" and dependents:
                finalizers.append(FOREGROUND_FINALIZER)
            graceful = resource is PODS and self._needs_graceful_deletion(obj, grace_period_seconds)
            if not finalizers and not graceful:
                result = self._remove(resource, obj)
                if policy != "Orphan":
                    self._delete_dependents(dependents)
                return result
            old = copy.deepcopy(obj)
            grace = 0
            if graceful:
                grace = (
                    grace_period_seconds
                    if grace_period_seconds is not None
                    else obj["spec"].get("terminationGracePeriodSeconds", 30)
                )
            metadata["deletionTimestamp"] = format_timestamp(datetime.now(UTC) + timedelta(seconds=grace))
            metadata["deletionGracePeriodSeconds"] = grace
            if finalizers:
                metadata["finalizers"] = finalizers
            written = self._commit("MODIFIED", resource, obj, old)
            if policy != "Orphan":
                self._delete_dependents(dependents)
            return self.try_get(resource, namespace, name) or written

    def delete_collection(
        self,
        resource: ResourceType,
        namespace: str | None,
        label_selector: LabelSelector | None = None,
        field_selector: FieldSelector | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """Delete every matching object and return them as a list, as deletecollection does."""
        deleted = []
        for obj in self.select(resource, namespace, label_selector, field_selector):
            try:
                deleted.append(
                    self.delete(resource, obj["metadata"].get("namespace"), obj["metadata"]["name"], **options)
                )
            except errors.ApiError as err:
                if err.code != 404:
                    raise
        return {
            "kind": resource.list_kind,
            "apiVersion": resource.api_version,
            "metadata": {"resourceVersion": str(self.resource_version)},
            "items": deleted,
        }

    @staticmethod
    def _needs_graceful_deletion(pod: dict[str, Any], grace_period_seconds: int | None) -> bool:
        if grace_period_seconds == 0:
            return False
        phase = (pod.get("status") or {}).get("phase")
        return bool(pod["spec"].get("nodeName")) and phase not in _TERMINAL_POD_PHASES

    def _removable(self, resource: ResourceType, obj: dict[str, Any]) -> bool:
        """Tell whether an object marked for deletion can go now: no finalizers left and, for a
        pod, nothing left for the kubelet to stop."""
        metadata = obj["metadata"]
        if not metadata.get("deletionTimestamp") or metadata.get("finalizers"):
            return False
        if resource is NAMESPACES:
            return not (obj.get("spec") or {}).get("finalizers")
        if resource is PODS:
            return not self._needs_graceful_deletion(obj, None) or metadata.get("deletionGracePeriodSeconds") == 0
        return True

    def finish_pod_deletion(self, namespace: str, name: str) -> None:
        """Remove a terminating pod once its containers have stopped (the kubelet's last step)."""
        with self._lock:
            pod = self.try_get(PODS, namespace, name)
            if pod is not None and pod["metadata"].get("deletionTimestamp") and not pod["metadata"].get("finalizers"):
                self._remove(PODS, pod)

    def _remove(self, resource: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        previous = copy.deepcopy(self._objects[resource].get(_key(obj), obj))
        removed = self._commit("DELETED", resource, copy.deepcopy(previous), previous)
        self.admission.release(resource, removed)
        self._after_removal(removed)
        if resource.returns_deleted_object or removed["metadata"].get("deletionTimestamp"):
            return removed
        details: dict[str, Any] = {
            "name": removed["metadata"]["name"],
            "kind": resource.plural,
            "uid": removed["metadata"]["uid"],
        }
        if resource.group:
            details["group"] = resource.group
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}

    def _dependents(self, owner_uid: str) -> list[tuple[ResourceType, dict[str, Any]]]:
        found = []
        for resource, objects in self._objects.items():
            for obj in objects.values():
                if any(ref.get("uid") == owner_uid for ref in obj["metadata"].get("ownerReferences") or []):
                    found.append((resource, obj))
        return found

    def _delete_dependents(self, dependents: Iterable[tuple[ResourceType, dict[str, Any]]]) -> None:
        for resource, dependent in dependents:
            namespace, name = _key(dependent)
            if self._objects[resource].get((namespace, name)) is None:
                continue
            self.delete(resource, namespace or None, name, propagation_policy="Background")

    def _orphan_dependents(self, owner: dict[str, Any]) -> None:
        uid = owner["metadata"]["uid"]
        for resource, dependent in self._dependents(uid):
            old = copy.deepcopy(dependent)
            updated = copy.deepcopy(dependent)
            references = [ref for ref in updated["metadata"]["ownerReferences"] if ref.get("uid") != uid]
            if references:
                updated["metadata"]["ownerReferences"] = references
            else:
                updated["metadata"].pop("ownerReferences")
            self._commit("MODIFIED", resource, updated, old)

    def _after_removal(self, removed: dict[str, Any]) -> None:
        """Finish foreground deletions and namespace terminations that waited for this object."""
        for reference in removed["metadata"].get("ownerReferences") or []:
            found = self._find_by_uid_locked(reference.get("uid"))
            if found is None:
                continue
            owner_resource, owner = found
            finalizers = owner["metadata"].get("finalizers") or []
            if FOREGROUND_FINALIZER in finalizers and not self._dependents(owner["metadata"]["uid"]):
                old = copy.deepcopy(owner)
                updated = copy.deepcopy(owner)
                remaining = [f for f in finalizers if f != FOREGROUND_FINALIZER]
                if remaining:
                    updated["metadata"]["finalizers"] = remaining
                else:
                    updated["metadata"].pop("finalizers")
                written = self._commit("MODIFIED", owner_resource, updated, old)
                if self._removable(owner_resource, written):
                    self._remove(owner_resource, written)
        namespace = removed["metadata"].get("namespace")
        if namespace:
            owner = self._objects[NAMESPACES].get(("", namespace))
            if (
                owner is not None
                and owner["metadata"].get("deletionTimestamp")
                and not self._namespace_has_content(namespace)
            ):
                self._finish_namespace(owner)

    def _find_by_uid_locked(self, uid: str | None) -> tuple[ResourceType, dict[str, Any]] | None:
        for resource, objects in self._objects.items():
            for obj in objects.values():
                if obj["metadata"]["uid"] == uid:
                    return resource, obj
        return None

    def _namespace_has_content(self, namespace: str) -> bool:
        return any(
            key[0] == namespace for resource, objects in self._objects.items() if resource.namespaced for key in objects
        )

    def _terminate_namespace(self, namespace_obj: dict[str, Any]) -> dict[str, Any]:
        name = namespace_obj["metadata"]["name"]
        if not namespace_obj["metadata"].get("deletionTimestamp"):
            old = copy.deepcopy(namespace_obj)
            namespace_obj["metadata"]["deletionTimestamp"] = now_timestamp()
            namespace_obj["metadata"]["deletionGracePeriodSeconds"] = 0
            namespace_obj.setdefault("status", {})["phase"] = "Terminating"
            self._commit("MODIFIED", NAMESPACES, namespace_obj, old)
            for resource in ALL_RESOURCES:
                if resource.namespaced:
                    for obj in list(self._objects[resource].values()):
                        if obj["metadata"]["namespace"] == name and self._objects[resource].get(_key(obj)) is not None:
                            self.delete(resource, name, obj["metadata"]["name"], propagation_policy="Background")
        current = self._objects[NAMESPACES].get(("", name))
        if current is not None and not self._namespace_has_content(name):
            self._finish_namespace(current)
        return self.try_get(NAMESPACES, None, name) or copy.deepcopy(namespace_obj)

    def _finish_namespace(self, namespace_obj: dict[str, Any]) -> None:
        old = copy.deepcopy(namespace_obj)
        updated = copy.deepcopy(namespace_obj)
        updated.setdefault("spec", {})["finalizers"] = []
        self._commit("MODIFIED", NAMESPACES, updated, old)
        if not updated["metadata"].get("finalizers"):
            self._remove(NAMESPACES, updated)
