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
