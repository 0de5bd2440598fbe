"""Kubernetes Services for SkyShift Services: the three types, their addresses, updates and deletion."""

from __future__ import annotations

import pytest
from skyshift_core.cluster_manager import ClusterManagerError
from skyshift_core.objects import Service

from skyshift_k8s.objects import CLUSTER_LABEL, MANAGED_BY_LABEL


def make_service(service_type: str = "ClusterIP", name: str = "web", **port) -> Service:
    port = {"port": 80, "target_port": 8080, **port}
    return Service.model_validate(
        {
            "metadata": {"name": name, "namespace": "default", "uid": f"uid-svc-{name}"},
            "spec": {"type": service_type, "selector": {"app": "web"}, "ports": [port]},
        }
    )


async def test_cluster_ip_service_selects_job_pods(make_manager, make_job, make_unit, eventually, core):
    manager = await make_manager()
    web = make_unit(
        make_job("web", replicas=2, run="sleep infinity", restart_policy="Always", ports=[8080], labels={"app": "web"})
    )
    other = make_unit(make_job("db", run="sleep infinity", restart_policy="Always", labels={"app": "db"}))
    await manager.submit(web)
    await manager.submit(other)

    addresses = await manager.create_service(make_service(), [web.key])

    service = core.read_namespaced_service("web", "skyshift-default")
    assert addresses == [f"{service.spec.cluster_ip}:80"]
    assert service.spec.selector == {"app": "web", MANAGED_BY_LABEL: "skyshift", CLUSTER_LABEL: "kube"}
    assert [(p.port, p.target_port, p.protocol) for p in service.spec.ports] == [(80, 8080, "TCP")]

    async def web_pods():
        pods = core.list_namespaced_pod("skyshift-default", label_selector="app=web").items
        return pods if len(pods) == 2 else None

    pods = await eventually(web_pods)
    assert {pod.spec.containers[0].ports[0].container_port for pod in pods} == {8080}


async def test_node_port_service_reports_node_addresses(make_manager):
    manager = await make_manager()

    addresses = await manager.create_service(make_service("NodePort", node_port=30080), [])

    assert addresses[1:] == ["127.0.1.1:30080", "127.0.1.2:30080"]
    assert addresses[0].endswith(":80")


async def test_load_balancer_reports_ingress_once_assigned(make_manager, core):
    manager = await make_manager()
    service = make_service("LoadBalancer")

    before = await manager.create_service(service, [])
    # A cloud's load balancer controller writes the ingress into the Service's status.
    current = core.read_namespaced_service("web", "skyshift-default")
    current.status.load_balancer = {"ingress": [{"ip": "198.51.100.7"}]}
    core.replace_namespaced_service_status("web", "skyshift-default", current)
    after = await manager.create_service(service, [])

    node_port = current.spec.ports[0].node_port
    assert before == [f"{current.spec.cluster_ip}:80", f"127.0.1.1:{node_port}", f"127.0.1.2:{node_port}"]
    assert after == [*before, "198.51.100.7:80"]


async def test_changed_service_is_updated_in_place(make_manager, core):
    manager = await make_manager()

    await manager.create_service(make_service("ClusterIP"), [])
    created = core.read_namespaced_service("web", "skyshift-default")
    await manager.create_service(make_service("NodePort", target_port=9090), [])
    updated = core.read_namespaced_service("web", "skyshift-default")

    assert updated.metadata.uid == created.metadata.uid
    assert updated.spec.cluster_ip == created.spec.cluster_ip
    assert updated.spec.type == "NodePort"
    assert updated.spec.ports[0].target_port == 9090


async def test_delete_service_removes_only_its_own(make_manager, core):
    manager = await make_manager()
    await manager.create_service(make_service(name="web"), [])
    foreign = {"metadata": {"name": "api"}, "spec": {"selector": {"app": "api"}, "ports": [{"port": 80}]}}
    core.create_namespaced_service("skyshift-default", foreign)

    await manager.delete_service(make_service(name="web"))
    await manager.delete_service(make_service(name="web"))
    await manager.delete_service(make_service(name="api"))

    names = [service.metadata.name for service in core.list_namespaced_service("skyshift-default").items]
    assert names == ["api"]


async def test_foreign_service_with_same_name_is_rejected(make_manager, core):
    manager = await make_manager()
    await manager.create_service(make_service(name="other"), [])  # Creates the namespace.
    core.create_namespaced_service("skyshift-default", {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}})

    with pytest.raises(ClusterManagerError, match="already exists .* but SkyShift did not create it"):
        await manager.create_service(make_service(name="web"), [])


async def test_service_name_starting_with_digit(make_manager, core):
    manager = await make_manager()

    await manager.create_service(make_service(name="8ball"), [])

    assert core.read_namespaced_service("s-8ball", "skyshift-default").metadata.name == "s-8ball"
