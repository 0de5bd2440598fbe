"""The scheduler controller: places pending Jobs on clusters and re-places replicas of lost clusters.

Each reconcile reads the Job from the informer cache, works out which replicas need a cluster
(all of them for a new Job; those of clusters gone or unready past the grace period; the
difference after a scale), runs one scheduling cycle against the cache, and commits the result
with one conditional status write (the Job's resource_version is the precondition, and the
leader's fence rides along). A Job that cannot be placed gets a `Scheduled=False` condition with
the reason and is retried when clusters, their capacity, FilterPolicies or the Job change.
"""

from __future__ import annotations

import asyncio
import logging
import time

from prometheus_client import Histogram
from datetime import datetime, timezone

from skyshift_core.client import AsyncSkyShiftClient
from skyshift_core.controllers.events import record_event
from skyshift_core.errors import SkyShiftError
from skyshift_core.objects import (
    Cluster,
    ClusterPhase,
    Condition,
    FilterPolicy,
    Job,
    JobPhase,
    parse_object,
    set_condition,
)
from skyshift_core.runtime.informer import Informer
from skyshift_core.runtime.reconcile import Request, Result
from skyshift_core.scheduler.cache import SchedulerCache, pending_replicas
from skyshift_core.scheduler.cycle import Decision, schedule
from skyshift_core.scheduler.profile import Profile
from skyshift_core.scheduler.shares import assign_shares, trim_placement

logger = logging.getLogger(__name__)

_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
CYCLE_SECONDS = Histogram(
    "skyshift_scheduler_cycle_duration_seconds",
    "Time to filter, score and divide for one Job, without the status write.",
    buckets=_BUCKETS,
)
DECISION_SECONDS = Histogram(
    "skyshift_scheduler_decision_duration_seconds",
    "Time from the start of a scheduling cycle to its committed status write, by result.",
    ["result"],
    buckets=_BUCKETS,
)

SCHEDULED = "Scheduled"
# Seconds a cluster may be unready before its replicas are placed elsewhere. Kubernetes evicts
# pods from an unreachable node after 300 s by default, and a Slurm controller restart or
# failover (SlurmctldTimeout defaults to 120 s) must not make running work start again elsewhere.
DEFAULT_GRACE_PERIOD = 300.0
# A waiting Job is looked at again after this long even without a triggering change.
RETRY_UNSCHEDULABLE_AFTER = 60.0
# Seconds that the replicas of a placement whose write failed without a verdict stay reserved,
# unless the informer shows the Job first. The write may have been applied, and the Job's next
# cycle, after the work queue's backoff, writes again or finds it placed.
UNCONFIRMED_WRITE_SECONDS = 30.0
# Events that may be written in the background at once. Beyond this a decision waits for its
# Event, so a slow API server slows the scheduler down instead of piling up unsent Events.
MAX_PENDING_EVENTS = 64
# Seconds `shutdown` waits for Events still being written before it cancels them.
EVENT_DRAIN_SECONDS = 5.0


class SchedulerReconciler:
    def __init__(
        self,
        client: AsyncSkyShiftClient,
        jobs: Informer,
        clusters: Informer,
        policies: Informer,
        profiles: dict[str, Profile],
        *,
        grace_period: float = DEFAULT_GRACE_PERIOD,
    ):
        self.client = client
        self.jobs = jobs
        self.clusters = clusters
        self.policies = policies
        self.profiles = profiles
        self.grace_period = grace_period
        self.cache = SchedulerCache()
        self._event_tasks: set[asyncio.Task] = set()
        # The last FilterPolicy listing made because the informer was behind a Job: (revision, policies).
        self._listed_policies: tuple[int, list[FilterPolicy]] = (0, [])
        self._policy_listing: asyncio.Future[tuple[int, list[FilterPolicy]]] | None = None

        jobs.add_event_handler(
            on_add=self.cache.set_job,
            on_update=lambda old, new: self.cache.set_job(new),
            on_delete=lambda job: self.cache.remove_job(job.metadata.namespace or "default", job.metadata.name),
        )
        clusters.add_event_handler(
            on_add=self.cache.set_cluster,
            on_update=lambda old, new: self.cache.set_cluster(new),
            on_delete=lambda cluster: self.cache.remove_cluster(cluster.metadata.name),
        )

    # ---- which Jobs a change concerns ----------------------------------------------------

    def requests_for_cluster(self, cluster: Cluster) -> list[Request]:
        """Return the Jobs a cluster change concerns: waiting Jobs it may make room for, and Jobs placed on it."""
        name = cluster.metadata.name
        return [
            Request.for_object(job)
            for job in self.jobs.list()
            if self._needs_scheduling(job) or name in job.status.placement
        ]

    def requests_for_policy(self, policy: FilterPolicy) -> list[Request]:
        return [
            Request.for_object(job)
            for job in self.jobs.list()
            if job.metadata.namespace == policy.metadata.namespace and self._needs_scheduling(job)
        ]

    def _needs_scheduling(self, job: Job) -> bool:
        if job.status.phase in (JobPhase.SUCCEEDED, JobPhase.FAILED):
            return False
        return sum(job.status.placement.values()) != job.spec.replicas

    # ---- reconcile -----------------------------------------------------------------------

    async def reconcile(self, request: Request) -> Result | None:
        job: Job | None = self.jobs.get(request.name, request.namespace)
        if job is None or job.status.phase in (JobPhase.SUCCEEDED, JobPhase.FAILED):
            return None

        profile = self.profiles.get(job.spec.scheduler_name)
        if profile is None:
            available = ", ".join(sorted(self.profiles)) or "none (install a plugin such as skyshift-scheduler-spread)"
            message = (
                f"spec.scheduler_name {job.spec.scheduler_name!r} names no scheduler profile; available: {available}. "
                "Profiles beyond the built-in ones come from the controller manager's configuration file "
                "(skyshift up --controller-manager-config FILE)"
            )
            await self._write_unscheduled(job, "UnknownProfile", message, None)
            return None

        current = dict(job.status.placement)
        lost, recheck_after = self._lost_clusters(current)
        keep = {cluster: count for cluster, count in current.items() if cluster not in lost}
        keep = trim_placement(keep, job.spec.replicas, job.status.clusters)
        need = job.spec.replicas - sum(keep.values())
        if need == 0 and keep == current:
            return Result(requeue_after=recheck_after) if recheck_after else None

        started = time.perf_counter()
        decision = Decision(profile.name, 0, {}, [], "")
        if need > 0:
            policies = await self._policies_as_of(int(job.metadata.resource_version or 0))
            if self.jobs.get(request.name, request.namespace) is not job:
                # The Job changed or was deleted while the policies were listed. A change queues
                # this request again, and a deleted Job must not be put back in the cache.
                return None
            cycle_started = time.perf_counter()
            decision = schedule(profile, job, self.cache.cluster_infos(), policies, replicas=need, current=keep)
            CYCLE_SECONDS.observe(time.perf_counter() - cycle_started)
            if decision.placement is None:
                reason = "SchedulerError" if decision.error else "Unschedulable"
                clusters = self.cache.clusters()
                deleted = {name for name in lost if name not in clusters}
                await self._write_unscheduled(job, reason, decision.message, decision, drop=deleted)
                DECISION_SECONDS.labels("unschedulable").observe(time.perf_counter() - started)
                return Result(requeue_after=RETRY_UNSCHEDULABLE_AFTER)

        placement = dict(keep)
        for cluster, count in (decision.placement or {}).items():
            placement[cluster] = placement.get(cluster, 0) + count
        await self._commit(job, placement, decision, lost)
        DECISION_SECONDS.labels("placed").observe(time.perf_counter() - started)
        return Result(requeue_after=recheck_after) if recheck_after else None

    async def _policies_as_of(self, revision: int) -> list[FilterPolicy]:
        """Return the FilterPolicies as they were at etcd revision `revision` or later.

        Jobs and FilterPolicies arrive on separate watches, so the informer may not yet have a
        policy created just before a Job. A placement made without it could not be taken back.
        When the informer has seen nothing as recent as `revision`, the policies are listed
        once, and every worker waiting at that moment shares the listing.
        """
        while True:
            seen = int(self.policies.resource_version or 0)
            if revision <= seen:
                return [policy for policy in self.policies.list() if isinstance(policy, FilterPolicy)]
            listed_at, listed = self._listed_policies
            if revision <= listed_at:
                return listed
            if self._policy_listing is None or self._policy_listing.done():
                self._policy_listing = asyncio.ensure_future(self._list_policies())
                # Every waiter may be cancelled (the manager stopping) before the listing fails, and
                # asyncio would then log its error as never retrieved.
                self._policy_listing.add_done_callback(_retrieve_error)
            # A listing that started before this Job was seen may end below its revision. The loop
            # then starts another one.
            self._listed_policies = max(self._listed_policies, await asyncio.shield(self._policy_listing), key=_revision)

    async def _list_policies(self) -> tuple[int, list[FilterPolicy]]:
        listing = await self.client.list_all(FilterPolicy, all_namespaces=True)
        policies = [parse_object(item, FilterPolicy) for item in listing["items"]]
        return int(listing["metadata"]["resource_version"]), policies

    def _lost_clusters(self, placement: dict[str, int]) -> tuple[set[str], float | None]:
        """Clusters of the placement that are gone or unready for longer than the grace period, and
        when to look again for those still within it."""
        lost: set[str] = set()
        recheck: float | None = None
        clusters = self.cache.clusters()
        now = time.time()
        for name in placement:
            cluster = clusters.get(name)
            if cluster is None:
                lost.add(name)
                continue
            # A Cluster being deleted keeps its replicas until the skylet has stopped them and the
            # Cluster is gone (within a second when the backend responds). Moving them earlier could
            # run them twice, when the backend cannot be reached to stop them.
            if cluster.status.phase is ClusterPhase.READY:
                continue
            since = _unready_since(cluster)
            remaining = self.grace_period - (now - since) if since else self.grace_period
            if remaining <= 0:
                lost.add(name)
            else:
                recheck = remaining if recheck is None else min(recheck, remaining)
        return lost, recheck

    async def _commit(self, job: Job, placement: dict[str, int], decision: Decision, lost: set[str]) -> None:
        generation = job.status.placement_generation + 1
        # Shallow copies suffice, and cost far less than a deep copy of the Job: every status field
        # written below gets a new value, and the cached Job's own values are never changed.
        status = job.status.model_copy()
        updated = job.model_copy(update={"status": status})
        old_shares = {cluster: share for cluster, share in status.clusters.items() if cluster not in lost}
        status.clusters = assign_shares(old_shares, placement, job.spec.replicas, generation)
        status.placement = placement
        status.placement_generation = generation
        if decision.verdicts:
            status.scheduling = decision.explanation()
        message = ", ".join(f"{count} on {name}" for name, count in sorted(placement.items()))
        if lost:
            message += f" (replicas moved off {', '.join(sorted(lost))})"
        placed_before, placed_now = sum(job.status.placement.values()), sum(placement.values())
        if placed_before and placed_before != placed_now:
            message += f" (scaled from {placed_before} to {placed_now} replicas)"
        status.conditions = set_condition(
            status.conditions,
            Condition(
                type=SCHEDULED,
                status="True",
                reason="Placed",
                message=message,
                observed_generation=job.metadata.generation,
            ),
        )

        # Reserve what will not run yet: unstarted replicas of kept clusters plus the new ones.
        pending = {
            cluster: count
            for cluster, count in pending_replicas(job).items()
            if cluster in placement and cluster not in lost
        }
        for cluster, count in _new_replicas(job.status.placement, placement, lost).items():
            pending[cluster] = min(placement[cluster], pending.get(cluster, 0) + count)
        self.cache.assume(job, pending, generation)
        try:
            await self.client.update_status(updated)
        except SkyShiftError as error:
            if 400 <= error.status_code < 500:
                # Rejected, so nothing was written. A Job that changed or vanished since the
                # informer saw it (409, 404) comes back with the informer's new version.
                self.cache.forget(job)
            else:
                self.cache.keep_unconfirmed(job, UNCONFIRMED_WRITE_SECONDS)
            # Reserve plugins learn of any failed write, as Kubernetes unreserves when binding fails.
            decision.unreserve(job)
            raise
        except Exception:
            # A timeout or a lost connection: etcd may have applied the write all the same.
            self.cache.keep_unconfirmed(job, UNCONFIRMED_WRITE_SECONDS)
            decision.unreserve(job)
            raise
        await self._record_event(job, "Normal", "Scheduled", f"placed {message}")
        logger.info(
            "Placed Job %s/%s (placement generation %d): %s",
            job.metadata.namespace, job.metadata.name, generation, message,
        )  # fmt: skip

    async def _write_unscheduled(
        self, job: Job, reason: str, message: str, decision: Decision | None, *, drop: set[str] = frozenset()
    ) -> None:
        """Record that the Job cannot be placed now, and remove the clusters in `drop` (deleted
        ones) from its placement, since their replicas no longer run anywhere."""
        drop = drop & set(job.status.placement)
        existing = next((c for c in job.status.conditions if c.type == SCHEDULED), None)
        unchanged = existing and existing.status == "False" and existing.reason == reason and existing.message == message
        if unchanged and not drop:
            # The condition is unchanged, so skip the write rather than churn the object, and log the
            # retry at DEBUG: a Job that fits nowhere is tried again after every capacity change.
            logger.debug("Job %s/%s still waits: %s", job.metadata.namespace, job.metadata.name, message)
            return
        logger.info("Job %s/%s waits: %s", job.metadata.namespace, job.metadata.name, message)
        # Shallow copies, as in `_commit`: only the fields written below get new values.
        updated = job.model_copy(update={"status": job.status.model_copy()})
        if drop:
            status = updated.status
            status.placement = {name: count for name, count in status.placement.items() if name not in drop}
            status.clusters = {name: share for name, share in status.clusters.items() if name not in drop}
            status.placement_generation += 1
            logger.info(
                "Job %s/%s: replicas removed from deleted clusters %s",
                job.metadata.namespace, job.metadata.name, ", ".join(sorted(drop)),
            )  # fmt: skip
        updated.status.conditions = set_condition(
            updated.status.conditions,
            Condition(
                type=SCHEDULED,
                status="False",
                reason=reason,
                message=message,
                observed_generation=job.metadata.generation,
            ),
        )
        if decision is not None:
            updated.status.scheduling = decision.explanation()
        await self.client.update_status(updated)
        await self._record_event(job, "Warning", "FailedScheduling", message)

    # ---- events --------------------------------------------------------------------------

    async def _record_event(self, job: Job, event_type: str, reason: str, message: str) -> None:
        """Record an Event about a decision whose status write has succeeded, without waiting for it.

        The decision is complete once its status is written, and the Event only reports it, so
        the worker goes on to the next Job while the Event is written, as Kubernetes' event
        recorder does. With MAX_PENDING_EVENTS writes outstanding, the worker waits instead.
        """
        event = record_event(self.client, job, event_type, reason, message, "scheduler")
        if len(self._event_tasks) >= MAX_PENDING_EVENTS:
            await event
            return
        task = asyncio.get_running_loop().create_task(event, name=f"event-{reason}-{job.metadata.name}")
        self._event_tasks.add(task)
        task.add_done_callback(self._event_tasks.discard)

    async def shutdown(self) -> None:
        """Wait up to EVENT_DRAIN_SECONDS for the Events still being written, then cancel the rest.

        The controller calls this when it stops, before the client that writes them is closed.
        """
        if not self._event_tasks:
            return
        pending = set(self._event_tasks)
        _, unfinished = await asyncio.wait(pending, timeout=EVENT_DRAIN_SECONDS)
        if unfinished:
            logger.warning(
                "Scheduler stopping: %d Events not written within %.0f s are dropped",
                len(unfinished), EVENT_DRAIN_SECONDS,
            )  # fmt: skip
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)


def _revision(listing: tuple[int, list[FilterPolicy]]) -> int:
    return listing[0]


def _retrieve_error(task: asyncio.Future) -> None:
    """Mark a finished task's error as retrieved; the waiters that are left raise it themselves."""
    if not task.cancelled():
        task.exception()


def _unready_since(cluster: Cluster) -> float | None:
    for condition in cluster.status.conditions:
        if condition.type == "Ready" and condition.status != "True" and condition.last_transition_time:
            return condition.last_transition_time.timestamp()
    return None


def _new_replicas(old: dict[str, int], new: dict[str, int], lost: set[str]) -> dict[str, int]:
    """Replicas per cluster that this decision adds, which the cache must reserve until they start."""
    added = {}
    for cluster, count in new.items():
        before = 0 if cluster in lost else old.get(cluster, 0)
        if count > before:
            added[cluster] = count - before
    return added
