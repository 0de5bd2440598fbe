"""The whole control plane with a Kubernetes cluster (the fake) next to a simulated cluster: one Job
whose replicas span both, `skyshift cluster import-kubeconfig`, `skyshift exec`, logs through the API
server, deletion, and a cluster whose API server goes away.

The simulated cluster and the spread policy come from their own plugins, loaded by entry point."""

from __future__ import annotations

import asyncio
import fcntl
import importlib.metadata
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from skyshift_core.client import SkyShiftClient
from skyshift_core.testing.controlplane import simulated_cluster, wait_for


def _installed(group: str, name: str) -> bool:
    return any(entry.name == name for entry in importlib.metadata.entry_points(group=group))


pytestmark = pytest.mark.skipif(
    not (_installed("skyshift.cluster_managers", "simulated") and _installed("skyshift.scheduler_plugins", "spread")),
    reason="needs the skyshift-simulated and skyshift-scheduler-spread plugins",
)

# A context name that is not a valid object name, as kubectl users often have.
CONTEXT = "kind_site@A"
KUBE = "kind-site-a"


async def run_cli(server: str, token: str, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    """Run `skyshift --server SERVER ARGS...` as `admin` in a thread, so the control plane in this
    event loop keeps running."""
    command = [sys.executable, "-m", "skyshift_core.cli.main", "--server", server, *args]
    env = {**os.environ, "SKYSHIFT_TOKEN": token}
    return await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=60, input=input, env=env
    )


@pytest.fixture
def kube_context(fake, tmp_path: Path) -> Path:
    """A kubeconfig for the fake; tests request it before `control_plane`, so the skylets stop first."""
    return fake.write_kubeconfig(tmp_path / "imported-kubeconfig", context=CONTEXT)


async def cluster_phase(client, name: str, phase: str):
    cluster = await client.get("Cluster", name)
    return cluster if cluster["status"]["phase"] == phase else None


async def attach_clusters(api_server: str, admin_token: str, kube_context: Path, client) -> None:
    """Import the fake's context with the CLI and add a simulated cluster of 2 cpus; wait until both are READY."""
    imported = await run_cli(api_server, admin_token, "cluster", "import-kubeconfig", "--kubeconfig", str(kube_context))
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == f"cluster.skyshift/{KUBE} created (context '{CONTEXT}')"
    await client.create(simulated_cluster("sim", cpus=2, run_seconds=1))
    await wait_for(lambda: cluster_phase(client, KUBE, "READY"))
    await wait_for(lambda: cluster_phase(client, "sim", "READY"))


async def kube_replicas_running(client, job: str):
    """Return the Job's share on the Kubernetes cluster once each of its replicas runs."""
    status = (await client.get("Job", job, "default"))["status"]
    share = status["clusters"].get(KUBE)
    tasks = share["tasks"] if share else {}
    return share if tasks and all(task["state"] == "Running" for task in tasks.values()) else None


def job_manifest(name: str, run: str, restart_policy: str) -> dict:
    return {
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"replicas": 4, "run": run, "restart_policy": restart_policy, "resources": {"cpus": 1}},
    }


async def test_job_spans_kubernetes_and_simulated(
    api_server, admin_token, kube_context, batch, control_plane, async_client
):
    control_plane()
    await attach_clusters(api_server, admin_token, kube_context, async_client)
    run = "echo hello from $SKYSHIFT_REPLICA_INDEX of $SKYSHIFT_REPLICAS on $SKYSHIFT_CLUSTER; sleep 1"
    await async_client.create(job_manifest("mixed", run, "Never"))

    async def succeeded():
        status = (await async_client.get("Job", "mixed", "default"))["status"]
        return status if status["phase"] == "Succeeded" else None

    status = await wait_for(succeeded)
    with SkyShiftClient(api_server, token=admin_token) as sync_client:
        entries = list(sync_client.job_logs("mixed", "default"))
    await async_client.delete("Job", "mixed", "default")

    async def kube_job_gone():
        return batch.list_namespaced_job("skyshift-default").items == []

    await wait_for(kube_job_gone)

    # The spread policy divides 4 replicas 2 and 2 between the two clusters.
    kube_indices = status["clusters"][KUBE]["replica_indices"]
    assert set(status["placement"]) == {KUBE, "sim"}
    assert sorted(kube_indices + status["clusters"]["sim"]["replica_indices"]) == [0, 1, 2, 3]
    kube_tasks = status["clusters"][KUBE]["tasks"]
    assert {index: task["state"] for index, task in kube_tasks.items()} == {str(i): "Succeeded" for i in kube_indices}
    kube_lines = sorted((entry["replica"], entry["line"]) for entry in entries if entry.get("cluster") == KUBE)
    assert kube_lines == [(index, f"hello from {index} of 4 on {KUBE}") for index in kube_indices]


async def test_exec_in_kubernetes_replica(api_server, admin_token, kube_context, apps, control_plane, async_client):
    control_plane()
    await attach_clusters(api_server, admin_token, kube_context, async_client)
    await async_client.create(job_manifest("server", "sleep infinity", "Always"))

    share = await wait_for(lambda: kube_replicas_running(async_client, "server"))
    replica = str(share["replica_indices"][-1])
    script = "echo $SKYSHIFT_JOB $SKYSHIFT_REPLICA_INDEX on $SKYSHIFT_CLUSTER; exit 5"
    executed = await run_cli(api_server, admin_token, "exec", "server", "--replica", replica, "--", "sh", "-c", script)
    piped = await run_cli(api_server, admin_token, "exec", "server", "-r", replica, "-i", "--", "cat", input="typed\n")
    await async_client.delete("Job", "server", "default")

    async def deployment_gone():
        return apps.list_namespaced_deployment("skyshift-default").items == []

    await wait_for(deployment_gone)

    assert (executed.returncode, executed.stdout) == (5, f"server {replica} on {KUBE}\n"), executed.stderr
    assert (piped.returncode, piped.stdout) == (0, "typed\n"), piped.stderr


def run_in_terminal(command: list[str], env: dict[str, str], typed: bytes, columns: int, lines: int):
    """Run `command` on a new pseudo-terminal of the given size, type `typed` once the command has put
    the terminal in raw mode, and return (exit code, output, terminal mode before, mode after)."""
    master, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
    before = termios.tcgetattr(terminal)
    process = subprocess.Popen(command, stdin=terminal, stdout=terminal, stderr=terminal, env=env, start_new_session=True)
    output, deadline, sent = b"", time.monotonic() + 60, False
    try:
        while time.monotonic() < deadline:
            if not sent and not termios.tcgetattr(terminal)[3] & termios.ICANON:
                os.write(master, typed)
                sent = True
            readable, _, _ = select.select([master], [], [], 0.05)
            if readable:
                output += os.read(master, 4096)
            elif process.poll() is not None:
                break
        after = termios.tcgetattr(terminal)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        os.close(master)
        os.close(terminal)
    return process.returncode, output, before, after


async def test_interactive_exec_on_a_terminal(api_server, admin_token, kube_context, fake, control_plane, async_client):
    control_plane()
    await attach_clusters(api_server, admin_token, kube_context, async_client)
    await async_client.create(job_manifest("server", "sleep infinity", "Always"))
    share = await wait_for(lambda: kube_replicas_running(async_client, "server"))
    replica = str(share["replica_indices"][0])
    env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")}
    env["SKYSHIFT_TOKEN"] = admin_token
    command = [sys.executable, "-m", "skyshift_core.cli.main", "--server", api_server,
               "exec", "server", "-r", replica, "-it", "--", "cat"]  # fmt: skip

    code, output, before, after = await asyncio.to_thread(run_in_terminal, command, env, b"typed\r", 120, 40)
    await async_client.delete("Job", "server", "default")

    # The remote terminal turns the typed return into a newline for cat, and cat's newline into CR LF.
    assert (code, output) == (0, b"typed\r\n")
    assert fake.exec_resizes == [{"Width": 120, "Height": 40}]
    assert after == before  # Raw mode is undone when the session ends.


async def test_skylet_recreates_a_deleted_deployment(api_server, admin_token, kube_context, apps, control_plane, async_client):
    control_plane()
    await attach_clusters(api_server, admin_token, kube_context, async_client)
    await async_client.create(job_manifest("web", "sleep infinity", "Always"))

    await wait_for(lambda: kube_replicas_running(async_client, "web"))
    selector = "skyshift.io/job=web"
    # One Deployment per replica placed here: as many as the spread policy gave this cluster.
    first, *others = apps.list_namespaced_deployment("skyshift-default", label_selector=selector).items
    # A user deletes one replica's Deployment with kubectl: the share is partial, so the skylet
    # submits it again, which creates only the missing Deployment.
    apps.delete_namespaced_deployment(first.metadata.name, "skyshift-default")

    async def recreated():
        items = apps.list_namespaced_deployment("skyshift-default", label_selector=selector).items
        deployments = {d.metadata.name: d.metadata.uid for d in items}
        return deployments if deployments.get(first.metadata.name) not in (None, first.metadata.uid) else None

    deployments = await wait_for(recreated)
    await async_client.delete("Job", "web", "default")

    assert others
    assert deployments == {first.metadata.name: deployments[first.metadata.name]} | {
        other.metadata.name: other.metadata.uid for other in others
    }


async def test_unreachable_api_server_turns_cluster_error(api_server, fake, kube_context, control_plane, async_client):
    control_plane()
    client = async_client
    config = {"kubeconfig": str(kube_context), "context": CONTEXT}
    await client.create({"kind": "Cluster", "metadata": {"name": KUBE}, "spec": {"manager": "k8s", "config": config}})
    await wait_for(lambda: cluster_phase(client, KUBE, "READY"))

    fake.stop()

    async def unreachable():
        cluster = await cluster_phase(client, KUBE, "ERROR")
        conditions = cluster["status"]["conditions"] if cluster else []
        ready = next((condition for condition in conditions if condition["type"] == "Ready"), None)
        # A cycle that fails between the health check and the status read reports ClusterManagerError first.
        return ready if ready and ready["reason"] == "Unreachable" else None

    ready = await wait_for(unreachable)
    fake.start()
    await wait_for(lambda: cluster_phase(client, KUBE, "READY"))

    assert ready["status"] == "False"
    assert f"the API server at {fake.url} is unreachable" in ready["message"]


async def test_service_exposed_where_its_replicas_run(api_server, admin_token, kube_context, core, control_plane, async_client):
    control_plane()
    await attach_clusters(api_server, admin_token, kube_context, async_client)
    # Web replicas run only on the Kubernetes cluster (a FilterPolicy keeps them off the simulated one).
    await async_client.create({"kind": "FilterPolicy", "metadata": {"name": "web-on-kube"},
                               "spec": {"cluster_filter": {"include": [KUBE]}, "labels_selector": {"app": "web"}}})
    await async_client.create({"kind": "Job", "metadata": {"name": "web", "labels": {"app": "web"}},
                               "spec": {"replicas": 2, "run": "sleep infinity", "restart_policy": "Always", "ports": [8080]}})
    await async_client.create({"kind": "Service", "metadata": {"name": "web"},
                               "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"port": 80, "target_port": 8080}]}})

    async def addresses():
        status = (await async_client.get("Service", "web", "default"))["status"]
        return status["addresses"] if status["addresses"].get(KUBE) else None

    exposed = await wait_for(addresses)
    assert set(exposed) == {KUBE}  # Not on the simulated cluster, where no replica runs.
    services = core.list_namespaced_service("skyshift-default").items
    assert [service.spec.type for service in services] == ["NodePort"]

    # Without matching replicas the Service is removed from the cluster and from the status.
    await async_client.delete("Job", "web", "default")

    async def removed():
        status = (await async_client.get("Service", "web", "default"))["status"]
        return KUBE not in status["addresses"] and not core.list_namespaced_service("skyshift-default").items

    await wait_for(removed)
