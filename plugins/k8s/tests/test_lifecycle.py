"""Idempotence and recovery of the Kubernetes cluster manager: restarts, deletion, an API server that
goes away, expired watches, objects SkyShift did not create, and workloads the API server rejects."""

from __future__ import annotations

import asyncio
import logging

import pytest
from skyshift_core.cluster_manager import ClusterManagerError

from skyshift_k8s import manager as manager_module
from skyshift_k8s.objects import MANAGED_BY_LABEL, NAMESPACE_LABEL
from skyshift_k8s.testing.resources import JOBS


def foreign_job(name: str) -> dict:
    """A Job in SkyShift's namespace that someone else created."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"app": "other"}},
        "spec": {
            "template": {
                "metadata": {"labels": {"app": "other"}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox:1.36", "command": ["sleep", "60"]}],
                },
            }
        },
    }


async def test_namespace_created_on_demand(make_manager, make_job, make_unit, core):
    manager = await make_manager(namespace_prefix="sky-")

    await manager.submit(make_unit(make_job(namespace="research")))

    namespace = core.read_namespace("sky-research")
    assert namespace.metadata.labels[MANAGED_BY_LABEL] == "skyshift"
    assert namespace.metadata.labels[NAMESPACE_LABEL] == "research"
    assert manager.kubernetes_namespace("research") == "sky-research"


async def test_restarted_manager_creates_no_duplicates(make_manager, make_job, make_unit, eventually, batch, apps):
    first = await make_manager()
    batch_unit = make_unit(make_job(run="sleep 60"))
    always_unit = make_unit(make_job("web", replicas=2, run="sleep infinity", restart_policy="Always"))
    await first.submit(batch_unit)
    await first.submit(always_unit)
    await first.stop()

    second = await make_manager()
    found = await second.statuses()
    await second.submit(batch_unit)
    await second.submit(always_unit)

    assert set(found) == {batch_unit.key, always_unit.key}
    assert len(batch.list_namespaced_job("skyshift-default").items) == 1
    assert len(apps.list_namespaced_deployment("skyshift-default").items) == 2
    assert set(await second.statuses()) == {batch_unit.key, always_unit.key}


async def test_missing_deployment_makes_share_partial(make_manager, make_job, make_unit, eventually, apps):
    # As after a crash between the creates of a share's Deployments, or a `kubectl delete` of one.
    first = await make_manager()
    unit = make_unit(make_job("web", replicas=3, run="sleep infinity", restart_policy="Always"))
    await first.submit(unit)
    await first.stop()
    first_kept, lost, second_kept = sorted(
        apps.list_namespaced_deployment("skyshift-default").items, key=lambda d: d.metadata.name
    )
    apps.delete_namespaced_deployment(lost.metadata.name, "skyshift-default")
    manager = await make_manager()

    async def partial():
        status = (await manager.statuses()).get(unit.key)
        return status if status is not None and len(status.manager_job_ids) == 2 else None

    status = await eventually(partial)
    await manager.submit(unit)
    restored = {d.metadata.name: d.metadata.uid for d in apps.list_namespaced_deployment("skyshift-default").items}

    assert status.partial is True
    assert restored.keys() == {first_kept.metadata.name, lost.metadata.name, second_kept.metadata.name}
    assert restored[first_kept.metadata.name] == first_kept.metadata.uid
    assert restored[second_kept.metadata.name] == second_kept.metadata.uid
    assert (await manager.statuses())[unit.key].partial is False


async def test_unseen_deleted_workload_expires(make_manager, make_job, make_unit, eventually, apps):
    # Deployments deleted before the informer listed them count as existing for submitted_ttl_seconds.
    manager = await make_manager()
    manager.submitted_ttl_seconds = 0.5
    unit = make_unit(make_job("web", replicas=2, run="sleep infinity", restart_policy="Always"))
    status = await manager.submit(unit)
    for deployment in apps.list_namespaced_deployment("skyshift-default").items:
        apps.delete_namespaced_deployment(deployment.metadata.name, "skyshift-default")

    async def gone():
        return unit.key not in await manager.statuses()

    assert len(status.manager_job_ids) == 2
    assert await eventually(gone)


async def test_submit_twice_returns_same_work(make_manager, make_job, make_unit, batch):
    manager = await make_manager()
    unit = make_unit(make_job())

    first = await manager.submit(unit)
    second = await manager.submit(unit)

    assert first.manager_job_ids == second.manager_job_ids
    assert len(batch.list_namespaced_job("skyshift-default").items) == 1


async def test_new_generation_is_new_work(make_manager, make_job, make_unit, batch):
    manager = await make_manager()
    job = make_job(replicas=2, run="sleep 60")

    old = await manager.submit(make_unit(job, (0, 1), generation=1))
    new = await manager.submit(make_unit(job, (1,), generation=2))

    assert old.manager_job_ids != new.manager_job_ids
    assert len(batch.list_namespaced_job("skyshift-default").items) == 2


async def test_foreign_object_with_same_name_is_rejected(make_manager, make_job, make_unit, batch):
    manager = await make_manager()
    unit = make_unit(make_job())
    from skyshift_k8s.objects import workload_name

    await manager.submit(make_unit(make_job("other")))  # Creates the namespace.
    batch.create_namespaced_job("skyshift-default", foreign_job(workload_name("train", unit.key)))

    with pytest.raises(ClusterManagerError, match="already exists .* but belongs to no SkyShift work") as raised:
        await manager.submit(unit)
    assert raised.value.retryable is False


def without_image(positions: set[int]):
    """Wrap the manager's manifest builder so the workloads at `positions` have no image, which the
    API server rejects with 422 Invalid (`spec.template.spec.containers[0].image: Required value`)."""
    build = manager_module.workload_manifests

    def build_without_image(*args, **kwargs):
        manifests = build(*args, **kwargs)
        for position in positions:
            del manifests[position]["spec"]["template"]["spec"]["containers"][0]["image"]
        return manifests

    return build_without_image


async def test_invalid_job_manifest_rejected(make_manager, make_job, make_unit, monkeypatch):
    manager = await make_manager()
    unit = make_unit(make_job(replicas=2))
    monkeypatch.setattr(manager_module, "workload_manifests", without_image({0}))

    status = await manager.submit(unit)

    assert status.rejection is not None
    assert "HTTP 422 Invalid" in status.rejection
    assert "spec.template.spec.containers[0].image" in status.rejection
    assert {index: (task.state, task.reason) for index, task in status.tasks.items()} == {
        "0": ("Failed", "SubmitRejected"),
        "1": ("Failed", "SubmitRejected"),
    }
    assert unit.key not in await manager.statuses()


async def test_rejected_share_leaves_no_deployments(make_manager, make_job, make_unit, monkeypatch, apps):
    # The first replica's Deployment is created before the second one's is rejected.
    manager = await make_manager()
    unit = make_unit(make_job("web", replicas=2, run="sleep infinity", restart_policy="Always"))
    monkeypatch.setattr(manager_module, "workload_manifests", without_image({1}))

    status = await manager.submit(unit)

    assert status.rejection is not None
    assert apps.list_namespaced_deployment("skyshift-default").items == []


async def test_delete_removes_only_skyshift_objects(make_manager, make_job, make_unit, eventually, batch, apps, core):
    manager = await make_manager()
    batch_unit = make_unit(make_job(run="sleep 60"))
    always_unit = make_unit(make_job("web", replicas=2, run="sleep infinity", restart_policy="Always"))
    await manager.submit(batch_unit)
    await manager.submit(always_unit)
    batch.create_namespaced_job("skyshift-default", foreign_job("foreign"))

    async def pods_running():
        pods = core.list_namespaced_pod("skyshift-default").items
        return len([pod for pod in pods if pod.status.phase == "Running"]) == 4

    await eventually(pods_running)
    await manager.delete(batch_unit.key)
    await manager.delete(always_unit.key)

    async def only_foreign_pods_left():
        pods = core.list_namespaced_pod("skyshift-default").items
        return {pod.metadata.labels.get("app") for pod in pods} == {"other"}

    await eventually(only_foreign_pods_left)
    assert [job.metadata.name for job in batch.list_namespaced_job("skyshift-default").items] == ["foreign"]
    assert apps.list_namespaced_deployment("skyshift-default").items == []
    assert core.read_namespace("skyshift-default").metadata.name == "skyshift-default"
    await eventually(lambda: _keys(manager, set()))


async def test_delete_of_absent_work_succeeds(make_manager):
    manager = await make_manager()

    await manager.delete("uid-never-submitted-1")

    assert await manager.statuses() == {}


async def test_api_server_away_turns_not_ready(make_manager, make_job, make_unit, eventually, fake):
    manager = await make_manager()
    unit = make_unit(make_job(run="sleep 60"))
    await manager.submit(unit)
    assert (await manager.health()).ready is True

    fake.stop()
    health = await manager.health()
    with pytest.raises(ClusterManagerError, match="unreachable"):
        await eventually(manager.statuses, timeout=5)

    assert health.ready is False
    assert health.reason == "Unreachable"
    assert fake.url.removeprefix("http://") in health.message

    fake.start()
    assert (await manager.health()).ready is True
    await eventually(lambda: _keys(manager, {unit.key}))


async def test_unreadable_kubeconfig_is_not_ready(tmp_path):
    from skyshift_k8s import KubernetesClusterManager

    manager = KubernetesClusterManager("kube", {"kubeconfig": str(tmp_path / "missing")})

    health = await manager.health()

    assert health.ready is False
    assert health.reason == "InvalidKubeconfig"
    assert "does not exist" in health.message


async def test_expired_watch_lists_again(make_manager, make_job, make_unit, eventually, fake, caplog):
    manager = await make_manager()
    unit = make_unit(make_job(run="sleep 60"))
    await manager.submit(unit)
    await eventually(lambda: _keys(manager, {unit.key}))
    informers = manager._informers
    await eventually(lambda: all(informer.has_synced for informer in informers.values()))
    (name,) = [status.manager_job_ids[0].rsplit("/", 1)[1] for status in (await manager.statuses()).values()]

    # While the server is away the Job goes, and compacting drops the history the watches would resume from.
    with caplog.at_level(logging.INFO, logger="skyshift_k8s.informer"):
        fake.stop()
        fake.store.delete(JOBS, "skyshift-default", name, propagation_policy="Background")
        fake.compact()
        fake.start()
        await eventually(lambda: _keys(manager, set()))
        await eventually(lambda: all(informer.has_synced for informer in informers.values()))

    assert any("expired; listing again" in record.getMessage() for record in caplog.records)


async def test_watch_statuses_yields_changes(make_manager, make_job, make_unit):
    manager = await make_manager()
    unit = make_unit(make_job(run="sleep 0.5"))
    updates = manager.watch_statuses()

    initial = await anext(updates)
    await manager.submit(unit)
    phases = []
    async with asyncio.timeout(15):
        async for statuses in updates:
            if unit.key in statuses:
                phases.append(statuses[unit.key].tasks["0"].state)
            if phases and phases[-1] == "Succeeded":
                break
    await updates.aclose()

    assert initial == {}
    assert phases[-1] == "Succeeded"
    assert "Running" in phases


async def _keys(manager, expected: set[str]) -> bool:
    return set(await manager.statuses()) == expected
