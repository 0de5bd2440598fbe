"""The scheduler's view of clusters: reported capacity minus what placed work will still take.

A cluster reports allocatable resources per node, but replicas that were placed and have not
started yet are not in that report. The cache holds them as reservations and subtracts them, so a
burst of Jobs never overcommits a cluster. A reservation lasts until the replica has started and
a capacity report observed after that moment has arrived (from then on the cluster's own report
counts it), or until the replica ends.

Reservations are derived from each Job's status (placement minus started tasks), so a restarted
scheduler rebuilds the same view from its informers; at worst it holds a started replica's
reservation until the cluster's next report. Decisions this process wrote but has not yet seen
come back through the Job informer are held as "assumed" placements, as the Kubernetes scheduler
assumes pods before binding is observed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from skyshift_core.objects import Cluster, ClusterPhase, Job, JobPhase, ResourceList
from skyshift_core.scheduler.framework import ClusterInfo, NodeInfo, replica_request

# Task states in which the cluster's capacity report already includes (or no longer needs) the replica.
_STARTED = {"Running", "Succeeded", "Failed"}
# Stamp of a started replica that a capacity report already covers; below every real time.
_SETTLED = float("-inf")

JobKey = tuple[str, str]  # (namespace, name)


@dataclass
class _Reservation:
    request: ResourceList
    # Node name -> replicas reserved on it; "" holds replicas that fit on no node (over-reported).
    per_node: dict[str, int]


def pending_replicas(job: Job) -> dict[str, int]:
    """Replicas per cluster that are placed but not started, from the Job's status."""
    if job.status.phase in (JobPhase.SUCCEEDED, JobPhase.FAILED):
        return {}
    pending = {}
    for cluster, replicas in job.status.placement.items():
        unstarted = replicas - started_replicas(job).get(cluster, 0)
        if unstarted > 0:
            pending[cluster] = unstarted
    return pending


def started_replicas(job: Job) -> dict[str, int]:
    """Replicas per cluster whose tasks have started (running or ended)."""
    started = {}
    for cluster, share in job.status.clusters.items():
        count = sum(1 for task in share.tasks.values() if task.state in _STARTED)
        if count and cluster in job.status.placement:
            started[cluster] = count
    return started


class SchedulerCache:
    def __init__(self, clock=time.time) -> None:
        self._clock = clock
        self._clusters: dict[str, Cluster] = {}
        self._nodes: dict[str, list[NodeInfo]] = {}
        self._infos: dict[str, ClusterInfo] = {}
        # cluster -> job key -> reservation, and job key -> the clusters with a reservation of it
        self._reservations: dict[str, dict[JobKey, _Reservation]] = {}
        self._reserved_clusters: dict[JobKey, set[str]] = {}
        # job key -> (placement, placement generation) decided here but not yet seen in the informer
        self._assumed: dict[JobKey, tuple[dict[str, int], int]] = {}
        # job key -> clock time until which an assumed placement, whose write may have failed, is kept
        self._unconfirmed: dict[JobKey, float] = {}
        self._jobs: dict[JobKey, Job] = {}
        # job key -> cluster -> wall-clock times at which started replicas were first seen; each
        # keeps its reservation until a capacity report observed after that time arrives, and is
        # then marked _SETTLED (not dropped, so a later update of the Job does not stamp it again).
        self._settling: dict[JobKey, dict[str, list[float]]] = {}

    # ---- clusters -----------------------------------------------------------------------

    def set_cluster(self, cluster: Cluster) -> None:
        name = cluster.metadata.name
        self._clusters[name] = cluster
        self._nodes[name] = [
            NodeInfo(node_name, node.capacity, node.allocatable, dict(node.labels), node.cpu_allocation_unit)
            for node_name, node in sorted(cluster.status.nodes.items())
        ]
        self._build_info(name)
        # The fresh report carries none of our reservations: apply them again, less the started
        # replicas this report now covers.
        keys = list(self._reservations.get(name, {}))
        self._reservations[name] = {}
        for key in keys:
            self._reserved_clusters.get(key, set()).discard(name)
            self._reserve_on(key, name, self._wanted(key).get(name, 0))

    def remove_cluster(self, name: str) -> None:
        self._clusters.pop(name, None)
        self._nodes.pop(name, None)
        self._infos.pop(name, None)

    def cluster_infos(self) -> list[ClusterInfo]:
        """The clusters as the scheduler sees them; rebuilt only when a cluster changes."""
        return list(self._infos.values())

    def _build_info(self, name: str) -> None:
        cluster = self._clusters[name]
        self._infos[name] = ClusterInfo(
            name=name,
            labels=dict(cluster.metadata.labels),
            ready=cluster.status.phase is ClusterPhase.READY,
            cordoned=cluster.spec.cordoned,
            nodes=self._nodes.get(name, []),
            manager=cluster.spec.manager,
            deleting=cluster.metadata.deletion_timestamp is not None,
        )

    def clusters(self) -> dict[str, Cluster]:
        return self._clusters

    # ---- jobs ---------------------------------------------------------------------------

    def set_job(self, job: Job) -> None:
        """Record a Job as its informer reports it."""
        key = _key(job)
        assumed = self._assumed.get(key)
        if assumed is not None and job.status.placement_generation >= assumed[1]:
            del self._assumed[key]  # The informer caught up with our own write.
            self._unconfirmed.pop(key, None)
        self._jobs[key] = job
        self._track_starts(key, job)
        self._reserve(key)

    def assume(self, job: Job, pending: dict[str, int], generation: int) -> None:
        """Reserve `pending` replicas per cluster for a placement decided in this cycle, before
        its write is observed."""
        key = _key(job)
        self._jobs[key] = job
        self._assumed[key] = (dict(pending), generation)
        self._unconfirmed.pop(key, None)
        self._reserve(key)

    def forget(self, job: Job) -> None:
        """Drop an assumed placement whose write failed, restoring what the informer last showed."""
        key = _key(job)
        self._unconfirmed.pop(key, None)
        if self._assumed.pop(key, None) is not None:
            self._reserve(key)

    def keep_unconfirmed(self, job: Job, seconds: float) -> None:
        """Keep an assumed placement whose write failed without a verdict (a timeout, a lost
        connection), because the write may have been applied, for up to `seconds`.

        Until the informer shows the placement, or the Job is placed again, its replicas stay
        reserved, so that other Jobs do not take their room. Once `seconds` have passed, the next
        update of the Job, or of a cluster it has a reservation on, drops the assumption."""
        key = _key(job)
        if key in self._assumed:
            self._unconfirmed[key] = self._clock() + seconds

    def remove_job(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        self._assumed.pop(key, None)
        self._unconfirmed.pop(key, None)
        self._jobs.pop(key, None)
        self._settling.pop(key, None)
        self._release(key)

    def _track_starts(self, key: JobKey, job: Job) -> None:
        started = started_replicas(job)
        settling = self._settling.setdefault(key, {})
        now = self._clock()
        for cluster in set(settling) | set(started):
            stamps = settling.get(cluster, [])
            count = started.get(cluster, 0)
            stamps = stamps[:count] + [now] * max(0, count - len(stamps))
            if stamps:
                settling[cluster] = stamps
            else:
                settling.pop(cluster, None)
        if job.status.phase in (JobPhase.SUCCEEDED, JobPhase.FAILED):
            settling.clear()

    def _wanted(self, key: JobKey) -> dict[str, int]:
        """Replicas per cluster to reserve for a Job now."""
        job = self._jobs.get(key)
        if job is None:
            return {}
        expires = self._unconfirmed.get(key)
        if expires is not None and self._clock() >= expires:
            del self._unconfirmed[key]
            self._assumed.pop(key, None)
        assumed = self._assumed.get(key)
        wanted = dict(assumed[0]) if assumed is not None else pending_replicas(job)
        settling = self._settling.get(key, {})
        for cluster, stamps in settling.items():
            observed = self._observed(cluster)
            if observed is not None:
                stamps[:] = [_SETTLED if stamp < observed else stamp for stamp in stamps]
            unsettled = sum(1 for stamp in stamps if stamp != _SETTLED)
            if unsettled:
                wanted[cluster] = wanted.get(cluster, 0) + unsettled
        return wanted

    def _observed(self, cluster: str) -> float | None:
        report = self._clusters.get(cluster)
        if report is None or report.status.observed_time is None:
            return None
        return report.status.observed_time.timestamp()

    def _release(self, key: JobKey) -> None:
        for cluster in self._reserved_clusters.pop(key, ()):
            reservation = self._reservations.get(cluster, {}).pop(key, None)
            if reservation is not None:
                self._apply(cluster, reservation, sign=+1, place=False)

    def _reserve(self, key: JobKey) -> None:
        """Replace the Job's reservations with what it needs now.

        Reservations that already match are kept, so the echo of the scheduler's own write (and
        any update that changes no reservation) leaves the clusters' remembered fit counts alone."""
        job = self._jobs.get(key)
        needed = {cluster: count for cluster, count in self._wanted(key).items() if count > 0}
        if job is not None and self._reserved_exactly(key, needed, replica_request(job)):
            return
        self._release(key)
        if job is None:
            return
        for cluster, replicas in needed.items():
            self._reserve_on(key, cluster, replicas)

    def _reserved_exactly(self, key: JobKey, needed: dict[str, int], request: ResourceList) -> bool:
        """Tell whether the Job's reservations are exactly `needed` replicas of `request` per cluster."""
        clusters = self._reserved_clusters.get(key, set())
        if clusters != needed.keys():
            return False
        for cluster in clusters:
            reservation = self._reservations.get(cluster, {}).get(key)
            if reservation is None or reservation.request != request:
                return False
            if sum(reservation.per_node.values()) != needed[cluster]:
                return False
        return True

    def _reserve_on(self, key: JobKey, cluster: str, replicas: int) -> None:
        job = self._jobs.get(key)
        if job is None or replicas <= 0:
            return
        reservation = _Reservation(replica_request(job), {"": replicas})
        self._reservations.setdefault(cluster, {})[key] = reservation
        self._reserved_clusters.setdefault(key, set()).add(cluster)
        self._apply(cluster, reservation, sign=-1, place=True)

    def _apply(self, cluster: str, reservation: _Reservation, sign: int, place: bool) -> None:
        """Subtract (sign -1) or give back (+1) a reservation on the cluster's nodes.

        When placing, replicas go first-fit onto nodes, as a backend would start them. The per-node
        split is remembered, so giving back returns resources to the same nodes.
        """
        nodes = {node.name: node for node in self._nodes.get(cluster, [])}
        if place:
            total = sum(reservation.per_node.values())
            reservation.per_node = {}
            for node in nodes.values():
                if total == 0:
                    break
                fit = min(total, node.fit_count(reservation.request))
                if fit:
                    reservation.per_node[node.name] = fit
                    total -= fit
            if total:
                reservation.per_node[""] = total
        for node_name, count in reservation.per_node.items():
            node = nodes.get(node_name)
            if node is None:
                continue
            amount = _scale(node.allocation(reservation.request), count)
            node.allocatable = node.allocatable.subtract(amount) if sign < 0 else node.allocatable.add(amount)
        info = self._infos.get(cluster)
        if info is not None:
            info.invalidate()


def _key(job: Job) -> JobKey:
    return (job.metadata.namespace or "default", job.metadata.name)


def _scale(request: ResourceList, count: int) -> ResourceList:
    return ResourceList(
        cpus=request.cpus * count,
        memory=request.memory * count,
        disk=request.disk * count,
        gpus=request.gpus * count,
        accelerators={name: value * count for name, value in request.accelerators.items()},
    )
