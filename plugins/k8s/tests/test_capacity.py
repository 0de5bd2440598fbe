"""Per-node capacity: allocatable minus the requests of unfinished pods, with cordoned, NotReady and
tainted nodes left out, and GPUs counted by type."""

from __future__ import annotations

from decimal import Decimal

import pytest

from skyshift_k8s.capacity import exclusion_reason, node_resources, pod_requests


def pod(
    node: str | None, phase: str = "Running", *containers: dict, init: tuple[dict, ...] = (), overhead=None
) -> dict:
    spec: dict = {"containers": list(containers), "initContainers": list(init)}
    if node:
        spec["nodeName"] = node
    if overhead:
        spec["overhead"] = overhead
    return {"metadata": {"name": "p", "namespace": "n"}, "spec": spec, "status": {"phase": phase}}


def container(requests: dict | None = None, limits: dict | None = None, restart_policy: str | None = None) -> dict:
    entry: dict = {"name": "c", "resources": {}}
    if requests:
        entry["resources"]["requests"] = requests
    if limits:
        entry["resources"]["limits"] = limits
    if restart_policy:
        entry["restartPolicy"] = restart_policy
    return entry


def node(name: str, *, taints=None, unschedulable=False, ready="True", labels=None, **allocatable) -> dict:
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"taints": taints or [], **({"unschedulable": True} if unschedulable else {})},
        "status": {
            "allocatable": allocatable,
            "conditions": [{"type": "Ready", "status": ready, "reason": "KubeletNotReady"}],
        },
    }


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        pytest.param(
            pod("n", "Running", container({"cpu": "500m", "memory": "1Gi"}), container({"cpu": "1"})),
            {"cpu": Decimal("1.5"), "memory": Decimal(2**30)},
            id="containers-add-up",
        ),
        pytest.param(
            pod("n", "Running", container(limits={"cpu": "2", "nvidia.com/gpu": "1"})),
            {"cpu": Decimal(2), "nvidia.com/gpu": Decimal(1)},
            id="limits-stand-in-for-requests",
        ),
        # An init container of 3 cpus runs alone before the 1-cpu app container: the pod needs max(1, 3) = 3.
        pytest.param(
            pod("n", "Running", container({"cpu": "1"}), init=(container({"cpu": "3"}),)),
            {"cpu": Decimal(3)},
            id="init-container-peak",
        ),
        # A 1-cpu sidecar runs beside everything: app 1 + sidecar 1 = 2, init 2 + sidecar 1 = 3, so 3.
        pytest.param(
            pod(
                "n",
                "Running",
                container({"cpu": "1"}),
                init=(container({"cpu": "1"}, restart_policy="Always"), container({"cpu": "2"})),
            ),
            {"cpu": Decimal(3)},
            id="sidecar-adds-up",
        ),
        pytest.param(
            pod("n", "Running", container({"cpu": "1"}), overhead={"cpu": "250m"}),
            {"cpu": Decimal("1.25")},
            id="overhead-on-top",
        ),
    ],
)
def test_pod_requests(case, expected):
    assert pod_requests(case) == expected


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        pytest.param(node("a", cpu="4"), None, id="schedulable"),
        pytest.param(node("a", unschedulable=True, cpu="4"), "cordoned", id="cordoned"),
        pytest.param(node("a", ready="False", cpu="4"), "not ready (KubeletNotReady)", id="not-ready"),
        pytest.param(
            node("a", taints=[{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]),
            "tainted gpu=yes:NoSchedule",
            id="no-schedule",
        ),
        pytest.param(
            node("a", taints=[{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]),
            "tainted node.kubernetes.io/unreachable:NoExecute",
            id="no-execute",
        ),
        pytest.param(
            node("a", taints=[{"key": "spot", "effect": "PreferNoSchedule"}]), None, id="prefer-no-schedule-kept"
        ),
    ],
)
def test_exclusion_reason(case, expected):
    assert exclusion_reason(case) == expected


def test_node_resources_subtracts_unfinished_pods():
    nodes = [
        node("cpu-1", cpu="4", memory="8Gi", **{"ephemeral-storage": "10Gi"}),
        node("gpu-1", cpu="8", memory="32Gi", labels={"accel": "A100"}, **{"nvidia.com/gpu": "4"}),
        node("gpu-2", cpu="8", memory="32Gi", **{"nvidia.com/gpu": "2"}),
    ]
    pods = [
        pod("cpu-1", "Running", container({"cpu": "1500m", "memory": "1Gi"})),
        pod("cpu-1", "Pending", container({"cpu": "500m"})),
        pod("cpu-1", "Succeeded", container({"cpu": "2"})),  # Finished, so it requests nothing any more.
        pod("gpu-1", "Running", container({"cpu": "1", "nvidia.com/gpu": "3"})),
        pod(None, "Pending", container({"cpu": "4"})),  # Not bound to a node yet.
    ]

    report = node_resources(nodes, pods, "accel")

    # cpu-1: 4 - 1.5 - 0.5 = 2 cpus and 8192 - 1024 = 7168 MiB free.
    assert report["cpu-1"].capacity.cpus == 4
    assert report["cpu-1"].allocatable.cpus == 2
    assert report["cpu-1"].allocatable.memory == 7168
    assert report["cpu-1"].capacity.disk == 10240
    # gpu-1: 4 A100s, 3 in use.
    assert report["gpu-1"].capacity.accelerators == {"A100": 4}
    assert (report["gpu-1"].allocatable.gpus, report["gpu-1"].allocatable.accelerators) == (1, {"A100": 1})
    # gpu-2 has no accelerator label: GPUs without a type.
    assert (report["gpu-2"].capacity.gpus, report["gpu-2"].capacity.accelerators) == (2, {})


async def test_nodes_from_fake_cluster(make_manager, make_job, make_unit, eventually, kubelet, core):
    # node-a and node-b come with the fixture; node-b gets cordoned as `kubectl cordon` does.
    kubelet.add_node("node-gpu", cpu="8", memory="16Gi", gpus=2, labels={"nvidia.com/gpu.product": "A100"})
    kubelet.add_node(
        "node-tainted", cpu="4", memory="8Gi", taints=[{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}]
    )
    kubelet.add_node("node-down", cpu="4", memory="8Gi", ready=False)
    kubelet.add_node("node-spot", cpu="2", memory="4Gi", taints=[{"key": "spot", "effect": "PreferNoSchedule"}])
    core.patch_node("node-b", {"spec": {"unschedulable": True}})
    manager = await make_manager()
    foreign = {
        "metadata": {"name": "foreign"},
        "spec": {
            "nodeName": "node-a",
            "containers": [
                {
                    "name": "c",
                    "image": "busybox:1.36",
                    "command": ["sleep", "60"],
                    "resources": {"requests": {"cpu": "500m"}},
                }
            ],
        },
    }
    core.create_namespaced_pod("default", foreign)
    await manager.submit(make_unit(make_job(run="sleep 60", resources={"cpus": 1, "memory": "1Gi", "A100": 1})))

    async def gpu_in_use():
        report = await manager.nodes()
        return report if report.get("node-gpu") and report["node-gpu"].allocatable.gpus == 1 else None

    report = await eventually(gpu_in_use)
    assert sorted(report) == ["node-a", "node-gpu", "node-spot"]
    assert report["node-a"].allocatable.cpus == 3.5
    assert report["node-gpu"].capacity.accelerators == {"A100": 2}
    assert report["node-gpu"].allocatable.accelerators == {"A100": 1}
    assert report["node-gpu"].allocatable.cpus == 7
    assert report["node-gpu"].allocatable.memory == 15 * 1024
    assert report["node-gpu"].labels["nvidia.com/gpu.product"] == "A100"

    core.patch_node("node-b", {"spec": {"unschedulable": False}})
    report = await eventually(lambda: _has_node(manager, "node-b"))
    assert report["node-b"].allocatable.cpus == 4


async def _has_node(manager, name: str):
    report = await manager.nodes()
    return report if name in report else None
