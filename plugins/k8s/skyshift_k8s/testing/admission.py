"""Defaulting and validation of each kind, as kube-apiserver applies them on create and update.

The store calls `Admission.admit_create` after it has filled in the object's metadata, and
`Admission.admit_update` before it writes an update. Both mutate the object in place and raise
`ApiError` 422 (Invalid) with one cause per broken rule. Only the rules that clients of the fake
are likely to meet are implemented; unknown fields are kept as they are.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from typing import Any

from . import errors
from .quantity import parse_quantity
from .resources import JOBS, NAMESPACES, SERVICES, ResourceType
from .selectors import LABEL_KEY_PATTERN, LABEL_VALUE_PATTERN, label_selector_from_object

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")

JOB_COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
JOB_CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"

# Service cluster IPs and pod IPs are taken from the loopback range on purpose, so that a client
# which tries to reach one of them never sends traffic off this machine.
SERVICE_CLUSTER_IP_RANGE = ipaddress.ip_network("127.96.0.0/16")
NODE_PORT_RANGE = range(30000, 32768)


class Causes:
    """Collects the field errors of one request before raising them together."""

    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def required(self, field: str, detail: str = "") -> None:
        message = "Required value" + (f": {detail}" if detail else "")
        self.items.append({"reason": "FieldValueRequired", "message": message, "field": field})

    def invalid(self, field: str, value: Any, detail: str) -> None:
        rendered = f'"{value}"' if isinstance(value, str) else repr(value)
        self.items.append(
            {"reason": "FieldValueInvalid", "message": f"Invalid value: {rendered}: {detail}", "field": field}
        )

    def unsupported(self, field: str, value: Any, supported: list[str]) -> None:
        options = ", ".join(f'"{option}"' for option in supported)
        self.items.append(
            {
                "reason": "FieldValueNotSupported",
                "message": f'Unsupported value: "{value}": supported values: {options}',
                "field": field,
            }
        )

    def forbidden(self, field: str, detail: str) -> None:
        self.items.append({"reason": "FieldValueForbidden", "message": f"Forbidden: {detail}", "field": field})

    def duplicate(self, field: str, value: Any) -> None:
        self.items.append({"reason": "FieldValueDuplicate", "message": f'Duplicate value: "{value}"', "field": field})

    def raise_if_any(self, resource: ResourceType, name: str) -> None:
        if self.items:
            raise errors.invalid(resource.group, resource.kind, name, self.items)


def _validate_name(resource: ResourceType, name: str, causes: Causes) -> None:
    if resource is SERVICES:
        pattern, limit, what = (
            _DNS1035_LABEL,
            63,
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character",
        )
    elif resource in (NAMESPACES, JOBS):
        pattern, limit, what = (
            _DNS1123_LABEL,
            63,
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
        )
    else:
        pattern, limit, what = (
            _DNS1123_SUBDOMAIN,
            253,
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
        )
    if len(name) > limit:
        causes.invalid("metadata.name", name, f"must be no more than {limit} characters")
    elif not pattern.match(name):
        causes.invalid("metadata.name", name, what)


def _validate_labels(labels: Any, field: str, causes: Causes) -> None:
    if labels is None:
        return
    if not isinstance(labels, dict):
        causes.invalid(field, labels, "must be a map of string keys to string values")
        return
    for key, value in labels.items():
        if not isinstance(key, str) or len(key) > 316 or not LABEL_KEY_PATTERN.match(key):
            causes.invalid(field, key, "name part must consist of alphanumeric characters, '-', '_' or '.'")
        if not isinstance(value, str) or len(value) > 63 or not LABEL_VALUE_PATTERN.match(value):
            causes.invalid(
                f"{field}",
                value,
                "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            )


def _image_pull_policy(image: str) -> str:
    tail = image.rsplit("/", 1)[-1]
    if "@" in tail:
        return "IfNotPresent"
    if ":" not in tail or tail.endswith(":latest"):
        return "Always"
    return "IfNotPresent"


def default_pod_spec(spec: dict[str, Any]) -> None:
    """Fill in the defaults that kube-apiserver gives a pod spec (also inside templates)."""
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        if not isinstance(container, dict):
            continue
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        if isinstance(container.get("image"), str):
            container.setdefault("imagePullPolicy", _image_pull_policy(container["image"]))
        resources = container.setdefault("resources", {})
        limits = resources.get("limits") or {}
        if limits:
            requests = resources.setdefault("requests", {})
            for resource_name, quantity in limits.items():
                requests.setdefault(resource_name, quantity)
        for port in container.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")


def validate_pod_spec(spec: Any, field: str, causes: Causes, allowed_restart_policies: list[str]) -> None:
    """Check the pod spec rules that a client can break by mistake."""
    if not isinstance(spec, dict):
        causes.required(field)
        return
    containers = spec.get("containers")
    if not containers:
        causes.required(f"{field}.containers")
        containers = []
    names: set[str] = set()
    for kind_field, items in (("initContainers", spec.get("initContainers") or []), ("containers", containers)):
        for index, container in enumerate(items):
            path = f"{field}.{kind_field}[{index}]"
            if not isinstance(container, dict):
                causes.invalid(path, container, "must be an object")
                continue
            name = container.get("name")
            if not name:
                causes.required(f"{path}.name")
            elif not _DNS1123_LABEL.match(name):
                causes.invalid(
                    f"{path}.name",
                    name,
                    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'",
                )
            elif name in names:
                causes.duplicate(f"{path}.name", name)
            else:
                names.add(name)
            if not container.get("image"):
                causes.required(f"{path}.image")
            _validate_resources(container.get("resources") or {}, f"{path}.resources", causes)
    policy = spec.get("restartPolicy")
    if policy not in allowed_restart_policies:
        causes.unsupported(f"{field}.restartPolicy", policy, allowed_restart_policies)


def _validate_resources(resources: dict[str, Any], field: str, causes: Causes) -> None:
    parsed: dict[str, dict[str, Any]] = {}
    for section in ("requests", "limits"):
        for resource_name, quantity in (resources.get(section) or {}).items():
            try:
                parsed.setdefault(section, {})[resource_name] = parse_quantity(quantity)
            except (ValueError, TypeError, AttributeError):
                causes.invalid(
                    f"{field}.{section}[{resource_name}]",
                    quantity,
                    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                )
    for resource_name, request in (parsed.get("requests") or {}).items():
        limit = (parsed.get("limits") or {}).get(resource_name)
        if limit is not None and request > limit:
            causes.invalid(
                f"{field}.requests",
                resources["requests"][resource_name],
                f"must be less than or equal to {resource_name} limit of {resources['limits'][resource_name]}",
            )


def qos_class(spec: dict[str, Any]) -> str:
    """Return the pod's QoS class (Guaranteed, Burstable or BestEffort)."""
    containers = (spec.get("containers") or []) + (spec.get("initContainers") or [])
    any_set = False
    guaranteed = True
    for container in containers:
        resources = container.get("resources") or {}
        requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
        if requests or limits:
            any_set = True
        for resource_name in ("cpu", "memory"):
            if resource_name not in limits or parse_quantity(
                requests.get(resource_name, limits[resource_name])
            ) != parse_quantity(limits[resource_name]):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _default_tolerations(spec: dict[str, Any]) -> None:
    """Add the NoExecute tolerations that the DefaultTolerationSeconds admission plugin adds."""
    tolerations = spec.setdefault("tolerations", [])
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if not any(
            t.get("key") == key and t.get("effect") in ("NoExecute", None) for t in tolerations if isinstance(t, dict)
        ):
            tolerations.append({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300})


def _check_selector_matches_template(spec: dict[str, Any], causes: Causes) -> None:
    selector = spec.get("selector")
    if not selector or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        causes.required("spec.selector")
        return
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    try:
        matches = label_selector_from_object(selector).matches(template_labels)
    except (ValueError, KeyError) as err:
        causes.invalid("spec.selector", selector, str(err))
        return
    if not matches:
        causes.invalid("spec.template.metadata.labels", template_labels, "`selector` does not match template `labels`")


def _immutable(old: dict[str, Any], new: dict[str, Any], field: str, causes: Causes) -> None:
    keys = field.split(".")
    old_value, new_value = old, new
    for key in keys:
        old_value = (old_value or {}).get(key) if isinstance(old_value, dict) else None
        new_value = (new_value or {}).get(key) if isinstance(new_value, dict) else None
    if old_value != new_value:
        causes.invalid(field, new_value, "field is immutable")


class Admission:
    """Per-kind defaulting and validation, plus the allocators for service IPs and node ports."""

    def __init__(self) -> None:
        self._allocated_ips: set[str] = set()
        self._allocated_node_ports: set[int] = set()

    def admit_create(self, resource: ResourceType, obj: dict[str, Any]) -> None:
        """Default and validate a new object; its metadata (name, uid) is already set."""
        metadata = obj["metadata"]
        causes = Causes()
        _validate_name(resource, metadata["name"], causes)
        _validate_labels(metadata.get("labels"), "metadata.labels", causes)
        causes.raise_if_any(resource, metadata["name"])
        handler = getattr(self, f"_create_{resource.plural}", None)
        if handler is not None:
            handler(obj, causes)
        causes.raise_if_any(resource, metadata["name"])

    def admit_update(self, resource: ResourceType, old: dict[str, Any], new: dict[str, Any]) -> None:
        """Default and validate a changed object against its stored version."""
        causes = Causes()
        _validate_labels(new["metadata"].get("labels"), "metadata.labels", causes)
        handler = getattr(self, f"_update_{resource.plural}", None)
        if handler is not None:
            handler(old, new, causes)
        causes.raise_if_any(resource, new["metadata"]["name"])

    def release(self, resource: ResourceType, obj: dict[str, Any]) -> None:
        """Free what a deleted object had allocated (a service's cluster IP and node ports)."""
        if resource is SERVICES:
            spec = obj.get("spec") or {}
            self._allocated_ips.discard(spec.get("clusterIP", ""))
            for port in spec.get("ports") or []:
                self._allocated_node_ports.discard(port.get("nodePort"))

    def _create_namespaces(self, obj: dict[str, Any], causes: Causes) -> None:
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj.setdefault("status", {})["phase"] = "Active"
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]

    def _create_pods(self, obj: dict[str, Any], causes: Causes) -> None:
        spec = obj.setdefault("spec", {})
        default_pod_spec(spec)
        spec.setdefault("serviceAccountName", "default")
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
        spec.setdefault("priority", 0)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
        _default_tolerations(spec)
        validate_pod_spec(spec, "spec", causes, ["Always", "OnFailure", "Never"])
        if causes.items:
            return
        obj["status"] = {"phase": "Pending", "qosClass": qos_class(spec)}

    def _update_pods(self, old: dict[str, Any], new: dict[str, Any], causes: Causes) -> None:
        mutable_old, mutable_new = copy.deepcopy(old.get("spec") or {}), copy.deepcopy(new.get("spec") or {})
        default_pod_spec(mutable_new)
        for spec in (mutable_old, mutable_new):
            for key in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds"):
                spec.pop(key, None)
            for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
                container.pop("image", None)
                container.pop("imagePullPolicy", None)
        if mutable_old != mutable_new:
            causes.forbidden(
                "spec",
                "pod updates may not change fields other than `spec.containers[*].image`, "
                "`spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` "
                "(only additions to existing tolerations), `spec.terminationGracePeriodSeconds`",
            )

    def _create_jobs(self, obj: dict[str, Any], causes: Causes) -> None:
        metadata, spec = obj["metadata"], obj.setdefault("spec", {})
        if spec.get("completions") is None and spec.get("parallelism") is None:
            spec["completions"] = 1
        spec.setdefault("parallelism", 1)
        spec.setdefault("backoffLimit", 6)
        spec.setdefault("completionMode", "NonIndexed")
        spec.setdefault("suspend", False)
        spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
        template = spec.setdefault("template", {})
        template_metadata = template.setdefault("metadata", {})
        if not spec.get("manualSelector"):
            generated = {
                JOB_CONTROLLER_UID_LABEL: metadata["uid"],
                JOB_NAME_LABEL: metadata["name"],
                "controller-uid": metadata["uid"],
                "job-name": metadata["name"],
            }
            template_metadata.setdefault("labels", {}).update(generated)
            if spec.get("selector"):
                causes.invalid("spec.selector", spec["selector"], "`selector` will be auto-generated")
            spec["selector"] = {"matchLabels": {JOB_CONTROLLER_UID_LABEL: metadata["uid"]}}
        default_pod_spec(template.setdefault("spec", {}))
        validate_pod_spec(template["spec"], "spec.template.spec", causes, ["OnFailure", "Never"])
        if spec["completionMode"] not in ("NonIndexed", "Indexed"):
            causes.unsupported("spec.completionMode", spec["completionMode"], ["NonIndexed", "Indexed"])
        if spec["completionMode"] == "Indexed" and spec.get("completions") is None:
            causes.required("spec.completions", "when completion mode is Indexed")
        for field in ("parallelism", "completions", "backoffLimit"):
            value = spec.get(field)
            if value is not None and (not isinstance(value, int) or value < 0):
                causes.invalid(f"spec.{field}", value, "must be greater than or equal to 0")
        deadline = spec.get("activeDeadlineSeconds")
        if deadline is not None and (not isinstance(deadline, int) or deadline <= 0):
            causes.invalid("spec.activeDeadlineSeconds", deadline, "must be greater than 0")
        obj.setdefault("status", {})

    def _update_jobs(self, old: dict[str, Any], new: dict[str, Any], causes: Causes) -> None:
        spec = new.setdefault("spec", {})
        default_pod_spec((spec.get("template") or {}).get("spec") or {})
        for field in ("spec.selector", "spec.template", "spec.completionMode", "spec.completions"):
            _immutable(old, new, field, causes)

    def _create_workload(self, obj: dict[str, Any], causes: Causes, with_strategy: bool) -> None:
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        if with_strategy:
            strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
            if strategy.get("type", "RollingUpdate") == "RollingUpdate":
                strategy.setdefault("type", "RollingUpdate")
                strategy.setdefault("rollingUpdate", {"maxUnavailable": "25%", "maxSurge": "25%"})
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("progressDeadlineSeconds", 600)
        template = spec.setdefault("template", {})
        default_pod_spec(template.setdefault("spec", {}))
        _check_selector_matches_template(spec, causes)
        validate_pod_spec(template["spec"], "spec.template.spec", causes, ["Always"])
        if not isinstance(spec["replicas"], int) or spec["replicas"] < 0:
            causes.invalid("spec.replicas", spec["replicas"], "must be greater than or equal to 0")
        obj.setdefault("status", {})

    def _create_deployments(self, obj: dict[str, Any], causes: Causes) -> None:
        self._create_workload(obj, causes, with_strategy=True)

    def _create_replicasets(self, obj: dict[str, Any], causes: Causes) -> None:
        self._create_workload(obj, causes, with_strategy=False)

    def _update_workload(self, old: dict[str, Any], new: dict[str, Any], causes: Causes) -> None:
        spec = new.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        default_pod_spec(spec.setdefault("template", {}).setdefault("spec", {}))
        _immutable(old, new, "spec.selector", causes)
        _check_selector_matches_template(spec, causes)
        validate_pod_spec(spec["template"]["spec"], "spec.template.spec", causes, ["Always"])
        if not isinstance(spec["replicas"], int) or spec["replicas"] < 0:
            causes.invalid("spec.replicas", spec["replicas"], "must be greater than or equal to 0")

    _update_deployments = _update_workload
    _update_replicasets = _update_workload

    def _allocate_cluster_ip(self) -> str:
        for address in SERVICE_CLUSTER_IP_RANGE.hosts():
            if str(address) not in self._allocated_ips:
                self._allocated_ips.add(str(address))
                return str(address)
        raise errors.ApiError(500, "InternalError", f"no free cluster IP left in {SERVICE_CLUSTER_IP_RANGE}")

    def _allocate_node_port(self) -> int:
        for port in NODE_PORT_RANGE:
            if port not in self._allocated_node_ports:
                self._allocated_node_ports.add(port)
                return port
        raise errors.ApiError(500, "InternalError", "no free node port left in 30000-32767")

    def _create_services(self, obj: dict[str, Any], causes: Causes) -> None:
        spec = obj.setdefault("spec", {})
        service_type = spec.setdefault("type", "ClusterIP")
        types = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"]
        if service_type not in types:
            causes.unsupported("spec.type", service_type, types)
            return
        spec.setdefault("sessionAffinity", "None")
        ports = spec.get("ports") or []
        if not ports and service_type != "ExternalName" and spec.get("clusterIP") != "None":
            causes.required("spec.ports")
        names: set[str] = set()
        for index, port in enumerate(ports):
            number = port.get("port")
            if not isinstance(number, int) or not 1 <= number <= 65535:
                causes.invalid(f"spec.ports[{index}].port", number, "must be between 1 and 65535, inclusive")
            if len(ports) > 1 and not port.get("name"):
                causes.required(f"spec.ports[{index}].name")
            if port.get("name") in names:
                causes.duplicate(f"spec.ports[{index}].name", port["name"])
            names.add(port.get("name"))
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", number)
        if causes.items:
            return
        if service_type == "ExternalName":
            if not spec.get("externalName"):
                causes.required("spec.externalName")
        else:
            if spec.get("clusterIP") != "None":
                spec["clusterIP"] = self._allocate_cluster_ip()
            spec["clusterIPs"] = [spec["clusterIP"]]
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
            spec.setdefault("internalTrafficPolicy", "Cluster")
        if service_type in ("NodePort", "LoadBalancer"):
            spec.setdefault("externalTrafficPolicy", "Cluster")
            for port in ports:
                if not port.get("nodePort"):
                    port["nodePort"] = self._allocate_node_port()
                else:
                    self._allocated_node_ports.add(port["nodePort"])
        obj["status"] = {"loadBalancer": {}}

    def _update_services(self, old: dict[str, Any], new: dict[str, Any], causes: Causes) -> None:
        old_spec, spec = old.get("spec") or {}, new.setdefault("spec", {})
        # An update that omits the allocated values keeps them, as kube-apiserver does since 1.20.
        for field in (
            "clusterIP",
            "clusterIPs",
            "ipFamilies",
            "ipFamilyPolicy",
            "type",
            "sessionAffinity",
            "internalTrafficPolicy",
        ):
            if field in old_spec and not spec.get(field):
                spec[field] = copy.deepcopy(old_spec[field])
        old_ports = {port.get("port"): port for port in old_spec.get("ports") or []}
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
            previous = old_ports.get(port.get("port"))
            if spec.get("type") in ("NodePort", "LoadBalancer") and not port.get("nodePort"):
                port["nodePort"] = (previous or {}).get("nodePort") or self._allocate_node_port()
        _immutable(old, new, "spec.clusterIP", causes)
