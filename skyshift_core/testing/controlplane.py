"""Helpers for tests that run a whole control plane: Cluster manifests for the simulated backend
(from the skyshift-simulated plugin, which must be installed for such clusters to run) and polling
with deadlines instead of fixed sleeps."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable


def simulated_cluster(
    name: str,
    *,
    nodes: int = 1,
    cpus: int = 4,
    memory: str = "8Gi",
    run_seconds: float = 0.5,
    labels: dict[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A Cluster manifest for the simulated backend; `extra` goes into its config."""
    config = {"node_count": nodes, "node": {"cpus": cpus, "memory": memory}, "run_seconds": run_seconds, **extra}
    return {
        "kind": "Cluster",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"manager": "simulated", "config": config},
    }


async def wait_for(predicate: Callable[[], Awaitable[Any]], timeout: float = 20.0, interval: float = 0.1) -> Any:
    """Poll an async predicate until it returns a truthy value, which is returned; raise
    AssertionError with the last value when `timeout` seconds pass first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = None
    while loop.time() < deadline:
        last = await predicate()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s; last value: {last!r}")


async def wait_for_ready_clusters(client, count: int, timeout: float = 20.0) -> list[dict]:
    """Wait until at least `count` Clusters report READY; return them."""

    async def ready():
        items = (await client.list("Cluster"))["items"]
        ready_items = [item for item in items if item["status"]["phase"] == "READY"]
        return ready_items if len(ready_items) >= count else None

    return await wait_for(ready, timeout)


async def wait_until_scheduler_sees(client, labels: dict[str, str], timeout: float = 20.0) -> None:
    """Wait until the scheduler counts the cluster with `labels` as ready, then clean up.

    The scheduler learns of a cluster's readiness through its own watch, a moment after a client
    sees it, so a Job created right after `wait_for_ready_clusters` may be placed without that
    cluster. This places a probe Job that only that cluster can take, waits for the placement,
    and deletes the probe.
    """
    from skyshift_core.errors import NotFoundError

    name = "scheduler-probe-" + "-".join(f"{key}-{value}" for key, value in sorted(labels.items()))[:40].rstrip("-")
    probe = {
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"run": "true", "restart_policy": "Never", "placement": {"filters": [{"match_labels": labels}]}},
    }
    await client.create(probe)

    async def placed():
        return (await client.get("Job", name, "default"))["status"]["placement"]

    await wait_for(placed, timeout)
    await client.delete("Job", name, "default")

    async def gone():
        try:
            await client.get("Job", name, "default")
        except NotFoundError:
            return True
        return False

    await wait_for(gone, timeout)


async def attach_simulated_clusters(client, *names: str, timeout: float = 20.0) -> None:
    """Create simulated clusters labelled `site=<name>` and wait until the scheduler counts each
    as ready (see `wait_until_scheduler_sees`), so that the next Job may go to any of them."""
    for name in names:
        await client.create(simulated_cluster(name, labels={"site": name}))
    await wait_for_ready_clusters(client, len(names), timeout)
    for name in names:
        await wait_until_scheduler_sees(client, {"site": name}, timeout)
