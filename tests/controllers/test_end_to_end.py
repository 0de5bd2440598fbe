"""The control plane end to end on simulated clusters: scheduling, running, reasons, recovery."""

from __future__ import annotations

import asyncio
import json

from skyshift_core.testing.controlplane import simulated_cluster, wait_for, wait_for_ready_clusters

JOB = {"kind": "Job", "metadata": {"name": "hello"}, "spec": {"replicas": 4, "run": "true", "restart_policy": "Never"}}


async def job_status(client, name="hello"):
    return (await client.get("Job", name, "default"))["status"]


async def test_job_spreads_runs_and_succeeds(client, control_plane):
    control_plane()
    await client.create(simulated_cluster("site-a"))
    await client.create(simulated_cluster("site-b"))
    await wait_for_ready_clusters(client, 2)
    await client.create(JOB)

    status = await wait_for(lambda: _phase(client, "Succeeded"))
    assert status["placement"] == {"site-a": 2, "site-b": 2}
    assert status["clusters"]["site-a"]["replica_indices"] == [0, 1]
    assert status["clusters"]["site-b"]["replica_indices"] == [2, 3]
    assert status["completion_time"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Scheduled"]["status"] == "True"


async def _phase(client, phase, name="hello"):
    status = await job_status(client, name)
    return status if status["phase"] == phase else None


async def test_pending_with_reason_then_placed_when_cluster_added(client, control_plane):
    control_plane()
    await client.create(simulated_cluster("small", cpus=1))
    await wait_for_ready_clusters(client, 1)
    big = dict(JOB, spec={**JOB["spec"], "replicas": 1, "resources": {"cpus": 2}})
    await client.create(big)

    async def waiting_reason():
        conditions = {c["type"]: c for c in (await job_status(client))["conditions"]}
        scheduled = conditions.get("Scheduled")
        return scheduled if scheduled and scheduled["status"] == "False" else None

    condition = await wait_for(waiting_reason)
    assert condition["reason"] == "Unschedulable"
    assert condition["message"] == (
        "0/1 clusters available: 1 too large for every node (cpus 2). No node has more than cpus 1."
    )
    assert (await job_status(client))["phase"] == "Pending"

    await client.create(simulated_cluster("large", cpus=8))
    status = await wait_for(lambda: _phase(client, "Succeeded"))
    assert status["placement"] == {"large": 1}


async def test_no_cluster_gives_reason(client, control_plane):
    control_plane()
    await client.create(JOB)

    async def message():
        conditions = {c["type"]: c for c in (await job_status(client))["conditions"]}
        return conditions.get("Scheduled", {}).get("message")

    assert await wait_for(message) == (
        "0/0 clusters available: no cluster is attached; attach one with skyshift apply -f CLUSTER.yaml."
    )


async def test_unknown_profile_gives_reason(client, control_plane):
    control_plane()
    await client.create(dict(JOB, spec={**JOB["spec"], "scheduler_name": "glod"}))

    async def unknown_profile():
        conditions = {c["type"]: c for c in (await job_status(client))["conditions"]}
        scheduled = conditions.get("Scheduled", {})
        return scheduled if scheduled.get("reason") == "UnknownProfile" else None

    condition = await wait_for(unknown_profile)
    assert condition["status"] == "False"
    assert condition["message"].startswith("spec.scheduler_name 'glod' names no scheduler profile; available: ")
    assert "binpack, default." in condition["message"]
    assert condition["message"].endswith("(skyshift up --controller-manager-config FILE)")


async def test_burst_never_overcommits(client, control_plane):
    # Two clusters of 4 CPUs each hold 8 one-CPU replicas at once; 20 Always jobs arrive together.
    control_plane()
    await client.create(simulated_cluster("a", cpus=4))
    await client.create(simulated_cluster("b", cpus=4))

    await wait_for_ready_clusters(client, 2)
    for index in range(20):
        await client.create({"kind": "Job", "metadata": {"name": f"burst-{index}"}, "spec": {"run": "sleep", "restart_policy": "Always"}})

    async def placed_count():
        items = (await client.list("Job", "default"))["items"]
        placed = [item for item in items if item["status"]["placement"]]
        return len(placed) if len(placed) >= 8 else None

    await wait_for(placed_count)
    items = (await client.list("Job", "default"))["items"]
    per_cluster = {"a": 0, "b": 0}
    for item in items:
        for cluster, count in item["status"]["placement"].items():
            per_cluster[cluster] += count
    assert per_cluster == {"a": 4, "b": 4}
    waiting = [item for item in items if not item["status"]["placement"]]
    assert len(waiting) == 12


async def test_failed_replica_fails_job(client, control_plane):
    control_plane()
    await client.create(simulated_cluster("site-a", fail_replicas=[1]))
    job = dict(JOB, spec={**JOB["spec"], "replicas": 2})
    await client.create(job)
    status = await wait_for(lambda: _phase(client, "Failed"))
    failed = {c["type"]: c for c in status["conditions"]}["Failed"]
    assert failed["message"] == "replica 1 on site-a failed with exit code 1: Error"


async def test_failed_job_stops_its_other_replicas(client, control_plane, api):
    from skyshift_simulated import registered_cluster

    # Replica 0 fails on site-a within a second; replica 1 on site-b would run for an hour.
    control_plane()
    await client.create(simulated_cluster("site-a", fail_replicas=[0], run_seconds=0.3))
    await client.create(simulated_cluster("site-b", run_seconds=3600))
    await wait_for_ready_clusters(client, 2)
    await client.create(dict(JOB, spec={**JOB["spec"], "replicas": 2}))
    await wait_for(lambda: _phase(client, "Failed"))

    async def replica_stopped():
        task = (await job_status(client))["clusters"]["site-b"]["tasks"].get("1", {})
        return task if task.get("reason") == "JobFailed" else None

    task = await wait_for(replica_stopped)
    status = await job_status(client)
    (work,) = registered_cluster("site-b").statuses().values()
    response = await asyncio.to_thread(api.get, "/api/v1/namespaces/default/jobs/hello/logs?replica=1")
    lines = [json.loads(line)["line"] for line in response.text.splitlines()]

    assert (task["state"], task["message"]) == ("Failed", "stopped because the Job failed")
    # The backend cancelled the work and kept it, so the replica's output is still there.
    assert (work.tasks["1"].state, work.tasks["1"].reason) == ("Failed", "Cancelled")
    assert lines[-1] == "replica 1 on site-b: cancelled"
    # The Job's reason still names the replica that failed.
    failed = {c["type"]: c for c in status["conditions"]}["Failed"]
    assert failed["message"] == "replica 0 on site-a failed with exit code 1: Error"


async def test_rejected_submission_fails_job(client, control_plane, api):
    # The simulated backend rejects a negative run_seconds, which the API server does not check.
    control_plane()
    await client.create(simulated_cluster("site-a"))
    job = dict(JOB, metadata={"name": "bad"}, spec={**JOB["spec"], "replicas": 1, "backend": {"simulated": {"run_seconds": -1}}})
    await client.create(job)
    backend_text = "invalid spec.backend.simulated.run_seconds -1"

    status = await wait_for(lambda: _phase(client, "Failed", "bad"))
    events = [event for event in (await client.list("Event", "default"))["items"] if event["involved_object"]["name"] == "bad"]
    response = await asyncio.to_thread(api.get, "/api/v1/namespaces/default/jobs/bad/logs")
    logs = [json.loads(line) for line in response.text.splitlines()]

    failed = {c["type"]: c for c in status["conditions"]}["Failed"]
    assert failed["message"].startswith("replica 0 on site-a failed: SubmitRejected: job default/bad: ")
    assert backend_text in failed["message"]
    assert [event["reason"] for event in events if event["source"] == "skylet/site-a"] == ["SubmitRejected"]
    rejected = next(event for event in events if event["reason"] == "SubmitRejected")
    assert rejected["type"] == "Warning"
    assert rejected["count"] == 1
    assert rejected["message"].startswith("cluster site-a rejected replicas [0]: ")
    assert backend_text in rejected["message"]
    assert status["clusters"]["site-a"]["manager_job_ids"] == []
    assert len(logs) == 1
    assert logs[0]["cluster"] == "site-a"
    assert logs[0]["error"].startswith("replica 0 has no output: cluster site-a rejected its submission: ")
    assert backend_text in logs[0]["error"]


async def test_deleting_job_deletes_backend_work(client, control_plane):
    from skyshift_simulated import registered_cluster

    control_plane()
    await client.create(simulated_cluster("site-a"))
    await client.create({"kind": "Job", "metadata": {"name": "forever"}, "spec": {"run": "serve", "restart_policy": "Always"}})
    await wait_for(lambda: _phase(client, "Running", "forever"))
    await client.delete("Job", "forever", "default")

    async def backend_empty():
        manager_state = registered_cluster("site-a")
        return manager_state is not None and not manager_state.statuses()

    await wait_for(backend_empty)


async def test_explain_and_logs_through_cli(client, control_plane, api_server, admin_token):
    from typer.testing import CliRunner

    from skyshift_core.cli.main import app

    control_plane()
    await client.create(simulated_cluster("site-a", labels={"tier": "gold"}))
    await client.create(simulated_cluster("site-b", cpus=1))
    await wait_for_ready_clusters(client, 2)
    job = {"kind": "Job", "metadata": {"name": "hello"}, "spec": {"replicas": 2, "run": "true", "restart_policy": "Never",
           "resources": {"cpus": 2}, "placement": {"preferences": [{"match_labels": {"tier": "gold"}, "weight": 50}]}}}
    await client.create(job)
    await wait_for(lambda: _phase(client, "Succeeded"))

    runner = CliRunner()
    server = ["--server", api_server, "--token", admin_token]
    explained = runner.invoke(app, [*server, "explain", "job", "hello"])
    assert explained.exit_code == 0, explained.output
    assert "Placement:  site-a=2" in explained.output
    assert "too large for every node (cpus 2) (resources-fit): site-b" in explained.output
    # The Job has preferences, so placement scores the clusters; spread's constant score is skipped.
    assert "PLACEMENT" in explained.output
    assert "Not scored (nothing to compare for this Job): spread" in explained.output

    logs = runner.invoke(app, [*server, "logs", "hello"])
    assert logs.exit_code == 0, logs.output
    assert "[replica 0 on site-a]" in logs.output
    assert "[replica 1 on site-a]" in logs.output

    one = runner.invoke(app, [*server, "logs", "hello", "--replica", "1", "--tail", "1"])
    assert one.exit_code == 0, one.output
    assert len(one.output.strip().splitlines()) == 1
    assert "[replica" not in one.output

    bad = runner.invoke(app, [*server, "logs", "hello", "--replica", "7"])
    assert bad.exit_code == 1
    assert "invalid replica 7: Job 'hello' has replicas 0 to 1" in bad.output


async def test_invalid_cluster_config_rejected_at_apply(client):
    from skyshift_core.errors import InvalidError

    bad = simulated_cluster("broken")
    bad["spec"]["config"]["node_cont"] = 2
    try:
        await client.create(bad)
    except InvalidError as error:
        assert "spec.config" in error.message
        assert "node_cont" in error.message
    else:
        raise AssertionError("an invalid simulated config was accepted")


async def test_cluster_with_uninstalled_manager_turns_error(client, control_plane):
    control_plane()
    await client.create({"kind": "Cluster", "metadata": {"name": "mystery"}, "spec": {"manager": "nosuchmanager"}})

    async def error_condition():
        cluster = await client.get("Cluster", "mystery")
        ready = {c["type"]: c for c in cluster["status"]["conditions"]}.get("Ready")
        return ready if cluster["status"]["phase"] == "ERROR" and ready else None

    ready = await wait_for(error_condition)
    assert ready["reason"] == "ManagerNotInstalled"
    assert "nosuchmanager" in ready["message"]
    assert "simulated" in ready["message"]  # The message lists what is installed.


async def test_filter_policy_and_placement_filter(client, control_plane):
    control_plane()
    await client.create(simulated_cluster("eu-1", labels={"region": "eu"}))
    await client.create(simulated_cluster("eu-2", labels={"region": "eu"}))
    await client.create(simulated_cluster("us-1", labels={"region": "us"}))
    await wait_for_ready_clusters(client, 3)
    # Jobs labelled team=ml may not use eu-2; the Job itself asks for region eu.
    await client.create({"kind": "FilterPolicy", "metadata": {"name": "ml-policy"},
                         "spec": {"cluster_filter": {"exclude": ["eu-2"]}, "labels_selector": {"team": "ml"}}})
    job = {"kind": "Job", "metadata": {"name": "train", "labels": {"team": "ml"}},
           "spec": {"replicas": 2, "run": "true", "restart_policy": "Never",
                    "placement": {"filters": [{"name": "eu-only", "match_labels": {"region": "eu"}}]}}}
    await client.create(job)
    status = await wait_for(lambda: _phase(client, "Succeeded", "train"))
    assert status["placement"] == {"eu-1": 2}
    filtered = {group["reason"]: group["clusters"] for group in status["scheduling"]["filtered"]}
    assert filtered == {
        "did not match placement filter 'eu-only' (placement)": ["us-1"],
        "excluded by FilterPolicy 'ml-policy' (filter-policy)": ["eu-2"],
    }


def test_profile_naming_missing_plugin_stops_start_up(tmp_path):
    import pytest

    from skyshift_core.controllers.manager import run_controller_manager

    config = tmp_path / "controller-manager.yaml"
    config.write_text("scheduler:\n  profiles:\n    - {name: default, divide: spraed}\n")
    with pytest.raises(SystemExit) as raised:
        run_controller_manager("http://127.0.0.1:9", config_path=config)
    message = str(raised.value)
    assert "spraed" in message
    assert "installed:" in message
    assert "spread" in message


async def test_events_recorded_for_scheduling_and_submission(client, control_plane):
    control_plane()
    await client.create(JOB)  # No cluster yet: a FailedScheduling warning.

    async def events_for_job():
        items = (await client.list("Event", "default"))["items"]
        return {item["reason"]: item for item in items if item["involved_object"]["name"] == "hello"}

    async def has(reason):
        events = await events_for_job()
        return events.get(reason)

    failed = await wait_for(lambda: has("FailedScheduling"))
    assert failed["type"] == "Warning"
    await client.create(simulated_cluster("site-a"))
    scheduled = await wait_for(lambda: has("Scheduled"))
    assert scheduled["message"] == "placed 4 on site-a"
    submitted = await wait_for(lambda: has("Submitted"))
    assert submitted["message"].startswith("replicas [0, 1, 2, 3] submitted to cluster site-a")
