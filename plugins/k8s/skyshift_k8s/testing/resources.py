"""The kinds that the fake API server serves, and the discovery documents that describe them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

FieldGetter = Callable[[dict], str]


def _path(*keys: str) -> FieldGetter:
    def get(obj: dict) -> str:
        value: Any = obj
        for key in keys:
            if not isinstance(value, dict):
                return ""
            value = value.get(key)
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    return get


_METADATA_FIELDS: dict[str, FieldGetter] = {
    "metadata.name": _path("metadata", "name"),
    "metadata.namespace": _path("metadata", "namespace"),
}


@dataclass(frozen=True)
class ResourceType:
    """One served resource: its group, version, names, scope and supported field selectors."""

    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ("status",)
    field_selectors: dict[str, FieldGetter] = field(default_factory=dict, hash=False, compare=False)
    # Propagation policy of a DELETE without one. batch/v1 Jobs still orphan their pods by default.
    default_propagation: str = "Background"
    # DELETE responds with the deleted object instead of a Success Status (pods and services do).
    returns_deleted_object: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def base_path(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    def selectable_fields(self) -> dict[str, FieldGetter]:
        return {**_METADATA_FIELDS, **self.field_selectors}


NAMESPACES = ResourceType(
    "",
    "v1",
    "Namespace",
    "namespaces",
    "namespace",
    namespaced=False,
    short_names=("ns",),
    field_selectors={"status.phase": _path("status", "phase")},
)
NODES = ResourceType(
    "",
    "v1",
    "Node",
    "nodes",
    "node",
    namespaced=False,
    short_names=("no",),
    field_selectors={"spec.unschedulable": _path("spec", "unschedulable")},
)
PODS = ResourceType(
    "",
    "v1",
    "Pod",
    "pods",
    "pod",
    namespaced=True,
    short_names=("po",),
    subresources=("status", "log", "exec", "binding"),
    returns_deleted_object=True,
    field_selectors={
        "spec.nodeName": _path("spec", "nodeName"),
        "spec.restartPolicy": _path("spec", "restartPolicy"),
        "spec.schedulerName": _path("spec", "schedulerName"),
        "spec.serviceAccountName": _path("spec", "serviceAccountName"),
        "status.phase": _path("status", "phase"),
        "status.podIP": _path("status", "podIP"),
        "status.nominatedNodeName": _path("status", "nominatedNodeName"),
    },
)
SERVICES = ResourceType(
    "",
    "v1",
    "Service",
    "services",
    "service",
    namespaced=True,
    short_names=("svc",),
    returns_deleted_object=True,
)
JOBS = ResourceType(
    "batch",
    "v1",
    "Job",
    "jobs",
    "job",
    namespaced=True,
    field_selectors={"status.successful": _path("status", "succeeded")},
    default_propagation="Orphan",
)
DEPLOYMENTS = ResourceType(
    "apps",
    "v1",
    "Deployment",
    "deployments",
    "deployment",
    namespaced=True,
    short_names=("deploy",),
    subresources=("status", "scale"),
)
REPLICASETS = ResourceType(
    "apps",
    "v1",
    "ReplicaSet",
    "replicasets",
    "replicaset",
    namespaced=True,
    short_names=("rs",),
    subresources=("status", "scale"),
)

ALL_RESOURCES: tuple[ResourceType, ...] = (NAMESPACES, NODES, PODS, SERVICES, JOBS, DEPLOYMENTS, REPLICASETS)
GROUP_VERSIONS: dict[str, tuple[str, str]] = {"v1": ("", "v1"), "batch/v1": ("batch", "v1"), "apps/v1": ("apps", "v1")}

_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
_CLUSTER_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


def resources_in(group: str, version: str) -> list[ResourceType]:
    return [r for r in ALL_RESOURCES if r.group == group and r.version == version]


def resource_by_plural(group: str, plural: str) -> ResourceType | None:
    return next((r for r in ALL_RESOURCES if r.group == group and r.plural == plural), None)


def _subresource_entry(resource: ResourceType, subresource: str) -> dict[str, Any]:
    kinds_and_verbs = {
        "status": (resource.kind, ["get", "patch", "update"]),
        "scale": ("Scale", ["get", "patch", "update"]),
        "log": ("Pod", ["get"]),
        "exec": ("PodExecOptions", ["create", "get"]),
        "binding": ("Binding", ["create"]),
    }
    kind, verbs = kinds_and_verbs[subresource]
    entry = {
        "name": f"{resource.plural}/{subresource}",
        "singularName": "",
        "namespaced": resource.namespaced,
        "kind": kind,
        "verbs": verbs,
    }
    if subresource == "scale":
        entry.update({"group": "autoscaling", "version": "v1"})
    return entry


def api_resource_list(group: str, version: str) -> dict[str, Any]:
    """Return the `APIResourceList` served at /api/v1 or /apis/GROUP/VERSION."""
    entries = []
    for resource in resources_in(group, version):
        entry: dict[str, Any] = {
            "name": resource.plural,
            "singularName": resource.singular,
            "namespaced": resource.namespaced,
            "kind": resource.kind,
            "verbs": _VERBS if resource.namespaced or resource is NODES else _CLUSTER_VERBS,
        }
        if resource.short_names:
            entry["shortNames"] = list(resource.short_names)
        if resource.group in ("apps",):
            entry["categories"] = ["all"]
        entries.append(entry)
        entries.extend(_subresource_entry(resource, sub) for sub in resource.subresources)
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": entries,
    }


def api_group(group: str) -> dict[str, Any]:
    """Return the `APIGroup` served at /apis/GROUP."""
    versions = sorted({r.version for r in ALL_RESOURCES if r.group == group})
    version_entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": version_entries,
        "preferredVersion": version_entries[0],
    }


def api_group_list() -> dict[str, Any]:
    """Return the `APIGroupList` served at /apis (the core group is at /api)."""
    groups = sorted({r.group for r in ALL_RESOURCES if r.group})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [api_group(g) for g in groups]}
