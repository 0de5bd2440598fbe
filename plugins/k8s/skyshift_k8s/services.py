"""Kubernetes Services for SkyShift Services: create or update, delete, and the addresses to report.

Pods carry their Job's labels, so a Service selecting by the SkyShift Service's selector (see
`objects.service_manifest`) reaches every matching replica on the cluster, including replicas
placed there after the Service was created.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from skyshift_core.cluster_manager import ClusterManagerError

from skyshift_k8s.api import KubernetesApi, KubernetesApiError
from skyshift_k8s.objects import CLUSTER_LABEL, MANAGED_BY_LABEL, SERVICE_LABEL

logger = logging.getLogger(__name__)


def is_skyshift_service(obj: dict[str, Any], manifest: dict[str, Any]) -> bool:
    """Tell whether an existing Service is the one SkyShift created from `manifest`."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    expected = manifest["metadata"]["labels"]
    return all(labels.get(key) == expected[key] for key in (MANAGED_BY_LABEL, CLUSTER_LABEL, SERVICE_LABEL))


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _ready_node_addresses(nodes: list[dict[str, Any]]) -> list[str]:
    addresses = []
    for node in sorted(nodes, key=lambda node: node["metadata"]["name"]):
        conditions = (node.get("status") or {}).get("conditions") or []
        if not any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            continue
        for address in (node.get("status") or {}).get("addresses") or []:
            if address.get("type") == "InternalIP" and address.get("address"):
                addresses.append(address["address"])
                break
    return addresses


def service_addresses(service: dict[str, Any], nodes: list[dict[str, Any]]) -> list[str]:
    """Return `host:port` addresses of a Service: its cluster IP, each ready node's InternalIP with
    each node port (NodePort and LoadBalancer), and the load balancer's ingress IPs or host names."""
    spec = service.get("spec") or {}
    ports = spec.get("ports") or []
    addresses = []
    cluster_ip = spec.get("clusterIP")
    if cluster_ip and cluster_ip != "None":
        addresses += [_host_port(cluster_ip, port["port"]) for port in ports]
    if spec.get("type") in ("NodePort", "LoadBalancer"):
        node_addresses = _ready_node_addresses(nodes)
        for port in ports:
            if port.get("nodePort"):
                addresses += [_host_port(host, port["nodePort"]) for host in node_addresses]
    for ingress in ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
        host = ingress.get("ip") or ingress.get("hostname")
        if host:
            addresses += [_host_port(host, port["port"]) for port in ports]
    return addresses


def _updated(existing: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any] | None:
    """Return `existing` changed to match the manifest's type, ports and selector, or None when it does.

    Fields the API server allocated (cluster IP, node ports that the manifest leaves open) are kept."""
    spec = existing.get("spec") or {}
    desired = manifest["spec"]
    allocated = {(port.get("port"), port.get("protocol")): port.get("nodePort") for port in spec.get("ports") or []}
    ports = []
    for port in desired["ports"]:
        port = dict(port)
        if (
            desired["type"] != "ClusterIP"
            and "nodePort" not in port
            and allocated.get((port["port"], port["protocol"]))
        ):
            port["nodePort"] = allocated[(port["port"], port["protocol"])]
        ports.append(port)

    def comparable(entries: list[dict[str, Any]]) -> list[tuple]:
        return sorted(
            (p.get("name"), p.get("protocol"), p.get("port"), p.get("targetPort"), p.get("nodePort")) for p in entries
        )

    same = (
        spec.get("type") == desired["type"]
        and spec.get("selector") == desired.get("selector")
        and comparable(spec.get("ports") or []) == comparable(ports)
    )
    if same:
        return None
    updated = copy.deepcopy(existing)
    updated["spec"]["type"] = desired["type"]
    updated["spec"]["ports"] = ports
    if "selector" in desired:
        updated["spec"]["selector"] = desired["selector"]
    else:
        updated["spec"].pop("selector", None)
    return updated


async def apply_service(api: KubernetesApi, manifest: dict[str, Any]) -> dict[str, Any]:
    """Create the Service, or bring the existing one in line with the manifest; return it."""
    namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    where = f"Service {namespace}/{name}"
    try:
        created = await api.call(api.core.create_namespaced_service, namespace, manifest, action=f"creating {where}")
        logger.info("Created %s on cluster %s", where, api.cluster)
        return created
    except KubernetesApiError as error:
        if error.status != 409:
            raise
    existing = await api.call(api.core.read_namespaced_service, name, namespace, action=f"reading {where}")
    if not is_skyshift_service(existing, manifest):
        raise ClusterManagerError(
            f"{where} already exists on Kubernetes cluster {api.cluster!r} but SkyShift did not create it; "
            "rename or delete that Service, or the SkyShift Service",
            retryable=False,
        )
    updated = _updated(existing, manifest)
    if updated is None:
        return existing
    result = await api.call(api.core.replace_namespaced_service, name, namespace, updated, action=f"updating {where}")
    logger.info("Updated %s on cluster %s to type %s", where, api.cluster, manifest["spec"]["type"])
    return result


async def remove_service(api: KubernetesApi, manifest: dict[str, Any]) -> None:
    """Delete the Service SkyShift created from `manifest`; a missing one, or one SkyShift did not create, stays as is."""
    namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    where = f"Service {namespace}/{name}"
    try:
        existing = await api.call(api.core.read_namespaced_service, name, namespace, action=f"reading {where}")
        if not is_skyshift_service(existing, manifest):
            logger.warning("Not deleting %s on cluster %s: SkyShift did not create it", where, api.cluster)
            return
        preconditions = {"uid": existing["metadata"]["uid"]}
        await api.call(
            api.core.delete_namespaced_service, name, namespace, body={"preconditions": preconditions},
            action=f"deleting {where}",
        )  # fmt: skip
        logger.info("Deleted %s on cluster %s", where, api.cluster)
    except KubernetesApiError as error:
        if error.status != 404:
            raise
