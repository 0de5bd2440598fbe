"""The Kubernetes cluster manager running shares on the fake API server through the official client:
batch and Always jobs, global replica indices, status transitions and the failure reasons."""

from __future__ import annotations

from skyshift_k8s.objects import CLUSTER_LABEL, JOB_LABEL, JOB_UID_LABEL, NAMESPACE_LABEL, WORK_KEY_LABEL
from skyshift_k8s.testing import UNPULLABLE_REGISTRY

ENV_SCRIPT = "echo index=$SKYSHIFT_REPLICA_INDEX of $SKYSHIFT_REPLICAS job=$SKYSHIFT_JOB ns=$SKYSHIFT_NAMESPACE on $SKYSHIFT_CLUSTER"


def states(status) -> dict[str, str]:
    return {index: task.state for index, task in status.tasks.items()}


async def finished(manager, key: str):
    status = (await manager.statuses()).get(key)
    if status and all(task.state in ("Succeeded", "Failed") for task in status.tasks.values()):
        return status
    return None


async def test_batch_job_runs_as_indexed_job(make_manager, make_job, make_unit, eventually, batch):
    manager = await make_manager()
    unit = make_unit(make_job(replicas=3, run=ENV_SCRIPT))

    submitted = await manager.submit(unit)
    status = await eventually(lambda: finished(manager, unit.key))

    assert states(submitted) == {"0": "Pending", "1": "Pending", "2": "Pending"}
    assert states(status) == {"0": "Succeeded", "1": "Succeeded", "2": "Succeeded"}
    assert {task.exit_code for task in status.tasks.values()} == {0}
    (job,) = batch.list_namespaced_job("skyshift-default").items
    assert job.spec.completion_mode == "Indexed"
    assert (job.spec.completions, job.spec.parallelism, job.spec.backoff_limit) == (3, 3, 0)
    assert status.manager_job_ids == [f"job/skyshift-default/{job.metadata.name}"]
    assert job.metadata.labels[JOB_LABEL] == "train"
    assert job.metadata.labels[NAMESPACE_LABEL] == "default"
    assert job.metadata.labels[JOB_UID_LABEL] == "uid-train"
    assert job.metadata.labels[CLUSTER_LABEL] == "kube"
    assert job.metadata.labels[WORK_KEY_LABEL] == unit.key
    lines = sorted([entry async for entry in manager.logs(unit.key)])
    assert lines == [(index, f"index={index} of 3 job=train ns=default on kube") for index in range(3)]


async def test_gapped_share_gets_global_indices(make_manager, make_job, make_unit, eventually):
    # Replicas 1, 4 and 6 of 8 run here; the pods have completion indices 0, 1 and 2.
    manager = await make_manager()
    unit = make_unit(make_job(replicas=8, run=ENV_SCRIPT), (1, 4, 6))

    await manager.submit(unit)
    status = await eventually(lambda: finished(manager, unit.key))

    assert states(status) == {"1": "Succeeded", "4": "Succeeded", "6": "Succeeded"}
    lines = sorted([entry async for entry in manager.logs(unit.key)])
    assert lines == [(index, f"index={index} of 8 job=train ns=default on kube") for index in (1, 4, 6)]


async def test_offset_share_gets_global_indices(make_manager, make_job, make_unit, eventually):
    manager = await make_manager()
    unit = make_unit(make_job(replicas=5, run="echo $SKYSHIFT_REPLICA_INDEX"), (3, 4))

    await manager.submit(unit)
    await eventually(lambda: finished(manager, unit.key))

    assert sorted([entry async for entry in manager.logs(unit.key)]) == [(3, "3"), (4, "4")]


async def test_dollar_signs_reach_the_shell_unexpanded(make_manager, make_job, make_unit, eventually):
    # Unescaped, the kubelet would replace $(SKYSHIFT_JOB) in the command and in env values.
    manager = await make_manager()
    job = make_job(run="echo '$(SKYSHIFT_JOB)' \"$PRICE\"", envs={"PRICE": "$(SKYSHIFT_JOB) $$5"})
    unit = make_unit(job)

    await manager.submit(unit)
    await eventually(lambda: finished(manager, unit.key))

    assert [entry async for entry in manager.logs(unit.key)] == [(0, "$(SKYSHIFT_JOB) $(SKYSHIFT_JOB) $$5")]


async def test_always_job_runs_one_deployment_per_replica(make_manager, make_job, make_unit, eventually, apps):
    manager = await make_manager()
    job = make_job("web", replicas=6, run='echo "replica $SKYSHIFT_REPLICA_INDEX of $SKYSHIFT_REPLICAS"; sleep infinity',
                   restart_policy="Always")  # fmt: skip
    unit = make_unit(job, (2, 3, 5))

    await manager.submit(unit)

    async def all_running():
        status = (await manager.statuses()).get(unit.key)
        return status if status and set(states(status).values()) == {"Running"} else None

    status = await eventually(all_running)
    deployments = sorted(apps.list_namespaced_deployment("skyshift-default").items, key=lambda d: d.metadata.name)
    assert sorted(status.tasks) == ["2", "3", "5"]
    assert [d.spec.replicas for d in deployments] == [1, 1, 1]
    assert {d.spec.template.spec.restart_policy for d in deployments} == {"Always"}
    assert status.manager_job_ids == [f"deployment/skyshift-default/{d.metadata.name}" for d in deployments]
    assert status.partial is False

    async def every_replica_printed():
        lines = [entry async for entry in manager.logs(unit.key)]
        return sorted(lines) if len(lines) == 3 else None

    # Each process prints a global, fixed index, because the replica's own Deployment sets it.
    assert await eventually(every_replica_printed) == [(2, "replica 2 of 6"), (3, "replica 3 of 6"), (5, "replica 5 of 6")]


async def test_failure_transitions_with_exit_code(make_manager, make_job, make_unit, eventually):
    manager = await make_manager()
    unit = make_unit(make_job(run="echo start; sleep 1; exit 3"))
    seen: list[str] = []

    submitted = await manager.submit(unit)
    seen.append(submitted.tasks["0"].state)
    async for statuses in manager.watch_statuses():
        task = statuses[unit.key].tasks["0"]
        if task.state != seen[-1]:
            seen.append(task.state)
        if task.state == "Failed":
            break

    assert seen == ["Pending", "Running", "Failed"]
    assert task.exit_code == 3
    assert task.reason == "Error"


async def test_on_failure_job_fails_after_backoff_limit(make_manager, make_job, make_unit, eventually, batch):
    manager = await make_manager()
    unit = make_unit(make_job(run="echo try; exit 1", restart_policy="OnFailure"))

    await manager.submit(unit)
    status = await eventually(lambda: finished(manager, unit.key))

    task = status.tasks["0"]
    (job,) = batch.list_namespaced_job("skyshift-default").items
    assert job.spec.backoff_limit == 3
    assert job.spec.template.spec.restart_policy == "OnFailure"
    assert task.state == "Failed"
    assert task.reason == "BackoffLimitExceeded"
    assert task.restarts >= 1
    assert task.exit_code == 1


async def test_unschedulable_pod_is_pending_with_message(make_manager, make_job, make_unit, eventually):
    manager = await make_manager()
    unit = make_unit(make_job(run="sleep 1", resources={"cpus": 16}))

    await manager.submit(unit)

    async def unschedulable():
        task = (await manager.statuses())[unit.key].tasks["0"]
        return task if task.reason == "Unschedulable" else None

    task = await eventually(unschedulable)
    assert task.state == "Pending"
    assert task.message == "0/2 nodes are available: 2 Insufficient cpu."


async def test_unpullable_image_is_pending_image_pull_backoff(make_manager, make_job, make_unit, eventually, kubelet):
    # The kubelet is stepped by hand: the first pull attempt fails (ErrImagePull), later ones back off.
    kubelet.stop()
    manager = await make_manager()
    unit = make_unit(make_job(image=f"{UNPULLABLE_REGISTRY}/missing:1.0"))

    await manager.submit(unit)
    kubelet.step()
    first = await eventually(lambda: _reason_is(manager, unit.key, "0", "ErrImagePull"))
    kubelet.step()
    then = await eventually(lambda: _reason_is(manager, unit.key, "0", "ImagePullBackOff"))

    assert first.state == "Pending"
    assert "failed to pull and unpack image" in first.message
    assert then.state == "Pending"
    assert then.message == f'Back-off pulling image "{UNPULLABLE_REGISTRY}/missing:1.0"'


async def test_lost_node_fails_batch_replica(make_manager, make_job, make_unit, eventually, kubelet, core):
    manager = await make_manager()
    unit = make_unit(make_job(run="sleep 60"))

    await manager.submit(unit)
    await eventually(lambda: _state_is(manager, unit.key, "0", "Running"))
    (pod,) = core.list_namespaced_pod("skyshift-default").items
    kubelet.lose_node(pod.spec.node_name)
    task = await eventually(lambda: _state_is(manager, unit.key, "0", "Failed"))

    assert task.reason == "NodeLost"
    assert pod.spec.node_name in task.message


async def test_unknown_pod_phase_is_pending_node_lost(make_manager, make_job, make_unit, eventually, kubelet, core):
    manager = await make_manager()
    unit = make_unit(make_job(run="sleep 60"))

    await manager.submit(unit)
    await eventually(lambda: _state_is(manager, unit.key, "0", "Running"))
    (pod,) = core.list_namespaced_pod("skyshift-default").items
    kubelet.lose_node(pod.spec.node_name, pod_phase="Unknown")
    task = await eventually(lambda: _reason_is(manager, unit.key, "0", "NodeLost"))

    assert task.state == "Pending"


async def test_lost_node_always_replica_runs_again(make_manager, make_job, make_unit, eventually, kubelet, core):
    manager = await make_manager()
    unit = make_unit(make_job("web", run="sleep infinity", restart_policy="Always"))

    await manager.submit(unit)
    await eventually(lambda: _state_is(manager, unit.key, "0", "Running"))
    (pod,) = core.list_namespaced_pod("skyshift-default").items
    kubelet.lose_node(pod.spec.node_name)

    async def replaced():
        pods = core.list_namespaced_pod("skyshift-default").items
        running = [p for p in pods if p.status.phase == "Running" and p.metadata.name != pod.metadata.name]
        return running[0] if running else None

    replacement = await eventually(replaced)
    task = await eventually(lambda: _state_is(manager, unit.key, "0", "Running"))
    assert replacement.spec.node_name != pod.spec.node_name
    assert task.reason == ""


async def _state_is(manager, key: str, index: str, state: str):
    task = (await manager.statuses())[key].tasks[index]
    return task if task.state == state else None


async def _reason_is(manager, key: str, index: str, reason: str):
    task = (await manager.statuses())[key].tasks[index]
    return task if task.reason == reason else None


async def test_cancel_suspends_job_and_keeps_finished_pods(make_manager, make_job, make_unit, eventually, batch):
    manager = await make_manager()
    # Replica 0 ends at once and replica 1 sleeps 100 s (the fake's shell has no `if`).
    run = "echo replica $SKYSHIFT_REPLICA_INDEX started; sleep ${SKYSHIFT_REPLICA_INDEX}00"
    unit = make_unit(make_job(replicas=2, run=run, restart_policy="Never"))
    await manager.submit(unit)

    async def one_done_one_running():
        status = (await manager.statuses()).get(unit.key)
        return status if status and states(status) == {"0": "Succeeded", "1": "Running"} else None

    await eventually(one_done_one_running)
    await manager.cancel(unit.key)
    await manager.cancel(unit.key)  # A second cancel changes nothing.
    status = await eventually(lambda: finished(manager, unit.key))
    lines = [entry async for entry in manager.logs(unit.key, 0)]

    (job,) = batch.list_namespaced_job("skyshift-default").items
    assert job.spec.suspend is True
    assert states(status) == {"0": "Succeeded", "1": "Failed"}
    assert (status.tasks["1"].reason, status.tasks["1"].message) == (
        "Cancelled", "cancelled by SkyShift, which suspended the Job"
    )
    assert lines == [(0, "replica 0 started")]
