"""Job subresources beyond status: `explain` (the last scheduling cycle) and `logs` (replica output
read through each cluster's manager plugin)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import AsyncIterator

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from skyshift_core.api.resources import json_response, query, query_bool, query_int
from skyshift_core.auth.service import authorize
from skyshift_core.cluster_manager import SUBMIT_REJECTED, ClusterManager, ClusterManagerError, ConfigError
from skyshift_core.errors import BadRequestError, InvalidError, NotFoundError, PluginError
from skyshift_core.objects import Cluster, ClusterShare, Job
from skyshift_core.plugins import load_driver
from skyshift_core.store import Store

logger = logging.getLogger(__name__)

router = APIRouter(tags=["jobs"])


@router.get("/api/v1/namespaces/{namespace}/jobs/{name}/explain", summary="Why a Job went where it did, or why it waits")
async def explain_job(request: Request, namespace: str, name: str) -> Response:
    await authorize(request, "get", "jobs/explain", namespace, name)
    store: Store = request.app.state.store
    job = await store.get(Job, namespace, name)
    scheduled = next((c for c in job.status.conditions if c.type == "Scheduled"), None)
    body = {
        "kind": "SchedulingExplanation",
        "api_version": "v1",
        "job": {"namespace": namespace, "name": name, "replicas": job.spec.replicas, "scheduler_name": job.spec.scheduler_name},
        "phase": job.status.phase.value,
        "placement": job.status.placement,
        "placement_generation": job.status.placement_generation,
        "scheduled": scheduled.model_dump(mode="json") if scheduled else None,
        "last_cycle": job.status.scheduling or None,
    }
    return json_response(body)


async def _manager_for(store: Store, cluster_name: str) -> ClusterManager:
    cluster = await store.get(Cluster, None, cluster_name)
    manager_class = load_driver("skyshift.cluster_managers", cluster.spec.manager)
    try:
        config = manager_class.validate_config(cluster.spec.config)
        manager = manager_class(cluster_name, config)
    except ConfigError as error:
        raise InvalidError(f"cluster {cluster_name!r} has an invalid config: {error}") from error
    except Exception as error:  # A bug in the plugin: name it rather than respond with a bare 500.
        logger.exception("Cluster manager plugin %r failed for cluster %s", cluster.spec.manager, cluster_name)
        raise PluginError(
            f"cluster manager plugin {cluster.spec.manager!r} failed while loading cluster {cluster_name!r}: "
            f"{type(error).__name__}: {error}; this is a bug in the plugin: report it to its authors"
        ) from error
    if not manager.supports_logs:
        raise BadRequestError(f"cluster {cluster_name!r} (manager {cluster.spec.manager!r}) does not provide logs")
    return manager


def _rejection_error(cluster: str, share: ClusterShare, indices: list[int]) -> str | None:
    """Return why replicas `indices` of a share have no output when the cluster rejected their
    submission (every one Failed with reason SUBMIT_REJECTED), or None."""
    tasks = [share.tasks.get(str(index)) for index in indices]
    rejected = [task for task in tasks if task is not None and task.state == "Failed" and task.reason == SUBMIT_REJECTED]
    if not rejected or len(rejected) != len(tasks):
        return None
    message = rejected[0].message
    if len(indices) == 1:
        return f"replica {indices[0]} has no output: cluster {cluster} rejected its submission: {message}"
    return f"replicas {indices} have no output: cluster {cluster} rejected their submission: {message}"


@router.get("/api/v1/namespaces/{namespace}/jobs/{name}/logs", summary="Stream a Job's replica output")
async def job_logs(request: Request, namespace: str, name: str) -> Response:
    """Newline-delimited JSON: `{"replica": 3, "cluster": "site-a", "line": "..."}` per output line.

    Query parameters: `replica` (one replica's output), `follow` (keep streaming new lines),
    `tail` (only the last N lines of each replica).
    """
    await authorize(request, "get", "jobs/logs", namespace, name)
    store: Store = request.app.state.store
    job = await store.get(Job, namespace, name)
    replica = query_int(request, "replica")
    follow = query_bool(request, "follow")
    tail = query_int(request, "tail", "tail_lines", "tailLines")
    if replica is not None and not 0 <= replica < job.spec.replicas:
        raise BadRequestError(f"invalid replica {replica}: Job {name!r} has replicas 0 to {job.spec.replicas - 1}")
    if tail is not None and tail < 0:
        raise BadRequestError(f"invalid tail {tail}: expected a number of lines >= 0")

    sources = []
    # Replicas whose submission the cluster rejected have no output, so the reason is sent instead.
    rejections = []
    for cluster, share in sorted(job.status.clusters.items()):
        if cluster not in job.status.placement or not share.replica_indices:
            continue
        if replica is not None and replica not in share.replica_indices:
            continue
        selected = [replica] if replica is not None else list(share.replica_indices)
        rejection = _rejection_error(cluster, share, selected)
        if rejection is not None:
            rejections.append({"cluster": cluster, "error": rejection})
            continue
        for unit in share.work_units():
            if any(index in unit.replica_indices for index in selected):
                sources.append((cluster, f"{job.metadata.uid}-{unit.generation}"))
    if not sources and not rejections:
        where = f"replica {replica} of " if replica is not None else ""
        raise BadRequestError(f"{where}Job {namespace}/{name} is not placed on any cluster yet; see: skyshift explain job {name}")

    managers = []
    deleted_clusters: set[str] = set()
    try:
        for cluster, key in sources:
            if cluster in deleted_clusters:
                continue
            try:
                managers.append((cluster, key, await _manager_for(store, cluster)))
            except NotFoundError:
                # The other clusters' output still comes; this one's is named as unreachable.
                deleted_clusters.add(cluster)
                indices = sorted(job.status.clusters[cluster].replica_indices)
                rejections.append({
                    "cluster": cluster,
                    "error": f"cluster {cluster} no longer exists, so the output of replicas {indices} "
                    "cannot be read through SkyShift",
                })  # fmt: skip
    except PluginError as error:
        raise BadRequestError(f"cannot read logs: {error.message}") from error
    return StreamingResponse(_merge(managers, rejections, replica, follow, tail), media_type="application/x-ndjson")


async def _merge(
    managers, rejections: list[dict[str, str]], replica: int | None, follow: bool, tail: int | None
) -> AsyncIterator[bytes]:
    """Send the `rejections` errors, then interleave the lines of every cluster's replicas as they arrive."""
    for rejection in rejections:
        yield json.dumps(rejection).encode() + b"\n"
    queue: asyncio.Queue = asyncio.Queue(maxsize=1000)
    done = object()

    async def pump(cluster: str, key: str, manager: ClusterManager) -> None:
        try:
            await manager.start()
            async for index, line in manager.logs(key, replica, follow=follow, tail=tail):
                await queue.put({"replica": index, "cluster": cluster, "line": line})
        except ClusterManagerError as error:
            await queue.put({"cluster": cluster, "error": str(error)})
        except Exception as error:  # One cluster's failure must not cut the others' output.
            logger.warning("Reading logs from cluster %s failed: %s", cluster, error)
            await queue.put({"cluster": cluster, "error": f"{type(error).__name__}: {error}"})
        finally:
            with contextlib.suppress(Exception):
                await manager.stop()
            await queue.put(done)

    tasks = [asyncio.ensure_future(pump(*entry)) for entry in managers]
    remaining = len(tasks)
    try:
        while remaining:
            item = await queue.get()
            if item is done:
                remaining -= 1
                continue
            yield json.dumps(item).encode() + b"\n"
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
