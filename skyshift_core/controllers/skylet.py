"""Skylets: one per attached cluster, each driving that cluster through its ClusterManager.

A skylet runs three level-based loops in one task, once per poll interval (and at once when a Job
placed on its cluster changes, or a backend that pushes status changes reports one):

  cluster controller  health and per-node capacity into the Cluster's status;
  flow controller     submit the shares placed on this cluster that the backend lacks, and delete
                      backend work no Job wants any more (deleted Jobs, moved replicas). A share
                      that the backend rejected is not submitted again while its placement is unchanged.
                      The replicas of a Failed Job that have not finished are stopped, as
                      Kubernetes ends a failed Job's active pods;
  job controller      the backend's task states into each Job's `status.clusters[<cluster>]`.

While work on the cluster changes state (after a submission or a new task state), the backend's
statuses are read every fast poll interval for a while, so that a state change reaches the Job
within a fraction of a second. Health and capacity are still read once per poll interval.

Nothing is deleted before the Job informer has synced, and a backend failure in one skylet never
stops the others or the controller manager.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from skyshift_core.client import AsyncSkyShiftClient
from skyshift_core.cluster_manager import SUBMIT_REJECTED, ClusterManager, ClusterManagerError, WorkStatus, WorkUnit
from skyshift_core.controllers.events import record_event, single_line
from skyshift_core.errors import (
    ConflictError,
    ForbiddenError,
    InvalidError,
    NotFoundError,
    SkyShiftError,
    UnauthorizedError,
    UnavailableError,
)
from skyshift_core.objects import (
    Cluster,
    ClusterPhase,
    ClusterShare,
    Condition,
    Job,
    JobPhase,
    RestartPolicy,
    Service,
    TaskStatus,
    set_condition,
    utc_now,
)
from skyshift_core.plugins import describe_error
from skyshift_core.runtime.informer import Informer

logger = logging.getLogger(__name__)

DEFAULT_POLL_INTERVAL = 1.0
# Seconds between status reads while work changes state, and for how long after the last change.
DEFAULT_FAST_POLL_INTERVAL = 0.2
DEFAULT_FAST_POLL_WINDOW = 10.0
# A capacity report is rewritten at least this often even when nothing changed, so the
# scheduler can tell a live cluster from a stale one by observed_time.
DEFAULT_REPORT_INTERVAL = 30.0
_MAX_BACKOFF = 30.0
# The reason of a replica that the skylet stopped, or never started, because its Job had failed.
STOPPED_JOB_FAILED = "JobFailed"
_FINISHED_STATES = ("Succeeded", "Failed")


class Skylet:
    def __init__(
        self,
        cluster: str,
        manager: ClusterManager,
        client: AsyncSkyShiftClient,
        jobs: Informer,
        *,
        services: Informer | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        report_interval: float = DEFAULT_REPORT_INTERVAL,
        fast_poll_interval: float = DEFAULT_FAST_POLL_INTERVAL,
        fast_poll_window: float = DEFAULT_FAST_POLL_WINDOW,
    ):
        self.cluster = cluster
        self.manager = manager
        self.client = client
        self.jobs = jobs
        self.services = services
        # Services exposed on this cluster: (namespace, name) -> (the Service as last applied, its generation).
        self._exposed: dict[tuple[str, str], tuple[Service, int]] = {}
        self.poll_interval = poll_interval
        self.report_interval = report_interval
        self.fast_poll_interval = min(fast_poll_interval, poll_interval)
        self.fast_poll_window = fast_poll_window
        self._wake = asyncio.Event()
        # Monotonic times: when fast polling ends, and when health and capacity were last read.
        self._fast_until = 0.0
        self._last_full_cycle = float("-inf")
        self._last_report: tuple[Any, ...] | None = None
        self._last_report_time = 0.0
        self._ready = False
        # (work key, warning) pairs already recorded as Events by this skylet.
        self._warned: set[tuple[str, str]] = set()
        # Work key -> status of a share that the backend rejected, kept while a Job places the share.
        self._rejections: dict[str, WorkStatus] = {}
        # Work keys of Failed Jobs that this skylet stopped, so a backend that still lists one as
        # running for a while gets it cancelled again without another Stopped Event.
        self._stopped: set[str] = set()
        # (namespace, name) -> resource_version of this skylet's last task write to that Job, kept
        # until the Job informer shows the write; see _task_writes_seen.
        self._unseen_task_writes: dict[tuple[str, str], int] = {}

    def wake(self) -> None:
        """Run the next cycle now; informer handlers call this when a Job on this cluster changes."""
        self._wake.set()

    def affected_by(self, old: Job | None, new: Job | None) -> bool:
        """Tell whether a change of a Job calls for a cycle now.

        It does when the Job was added or deleted, failed, or its spec or its share on this cluster
        changed. It also does when the Job shows a task write of this skylet, because capacity is
        reported at once after that (see `_task_writes_seen`). Other task writes wake no skylet."""
        if old is None or new is None or old.metadata.generation != new.metadata.generation:
            return True
        if new.status.phase is JobPhase.FAILED and old.status.phase is not JobPhase.FAILED:
            return True
        if (self.cluster in old.status.placement) != (self.cluster in new.status.placement):
            return True
        old_share, new_share = old.status.clusters.get(self.cluster), new.status.clusters.get(self.cluster)
        if (old_share is None) != (new_share is None):
            return True
        if old_share is not None and new_share is not None:
            if (old_share.replica_indices, old_share.generation) != (new_share.replica_indices, new_share.generation):
                return True
        return (new.metadata.namespace or "default", new.metadata.name) in self._unseen_task_writes

    async def run(self) -> None:
        backoff = self.poll_interval
        started = False
        follower: asyncio.Task | None = None
        last_error = ""
        try:
            while True:
                # Cleared before the cycle, so a wake-up that arrives during it runs another.
                self._wake.clear()
                try:
                    if not started:
                        await self.manager.start()
                        started = True
                        logger.info("Skylet %s: started %s cluster manager", self.cluster, type(self.manager).__name__)
                        if self.manager.supports_watch:
                            follower = asyncio.get_running_loop().create_task(self._follow_statuses())
                    await self.cycle()
                    if asyncio.current_task().cancelling():
                        # A call inside the cycle swallowed a cancellation, as Python 3.11's
                        # asyncio.wait_for can. The skylet stops all the same.
                        raise asyncio.CancelledError
                    backoff = self.poll_interval
                    last_error = ""
                    delay = self.fast_poll_interval if time.monotonic() < self._fast_until else self.poll_interval
                except asyncio.CancelledError:
                    raise
                except (UnavailableError, UnauthorizedError, ForbiddenError) as error:
                    # The API server is unreachable or refused a request: the cluster is not at fault,
                    # so its status is left as it is (and could not be written now anyway).
                    backoff = min(backoff * 2, _MAX_BACKOFF)
                    delay = backoff
                    last_error = describe_error(error)
                    logger.warning(
                        "Skylet %s: cycle failed at the API server, retrying in %.1f s: %s",
                        self.cluster, backoff, last_error,
                    )  # fmt: skip
                except Exception as error:  # A backend failure must not end the skylet.
                    backoff = min(backoff * 2, _MAX_BACKOFF)
                    delay = backoff
                    described = describe_error(error)
                    # A ClusterManagerError is the backend's own report; anything else is a bug,
                    # whose traceback is logged once for each new error text.
                    traceback = not isinstance(error, ClusterManagerError) and described != last_error
                    last_error = described
                    logger.warning(
                        "Skylet %s: cycle failed, retrying in %.1f s: %s", self.cluster, backoff, described,
                        exc_info=traceback,
                    )  # fmt: skip
                    await self._report_error(described)
                # asyncio.timeout, not wait_for: on Python 3.11, wait_for drops a cancellation that
                # arrives as the wake-up does, and this loop would then never end.
                try:
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                except TimeoutError:
                    pass
        finally:
            if follower is not None:
                follower.cancel()
                await asyncio.gather(follower, return_exceptions=True)
            if started:
                try:
                    await self.manager.stop()
                except Exception as error:
                    logger.warning("Skylet %s: stopping the cluster manager failed: %s", self.cluster, error)

    async def _follow_statuses(self) -> None:
        """Wake the skylet whenever a backend that pushes status changes (`supports_watch`) reports one."""
        while True:
            try:
                async for _ in self.manager.watch_statuses():
                    self.wake()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # The polled cycle goes on; the watch is opened again.
                logger.warning(
                    "Skylet %s: watching the backend's statuses failed, watching again in %.1f s: %s",
                    self.cluster, self.poll_interval, error,
                )  # fmt: skip
            await asyncio.sleep(self.poll_interval)

    async def cycle(self) -> None:
        """Run one pass of the three controllers.

        Health and capacity are read when a poll interval has passed since their last read, when
        the cluster was not ready, or after a task write of this skylet was seen. Other passes read
        only the backend's statuses."""
        now = time.monotonic()
        if self._task_writes_seen():
            self._last_report = None  # Report now, not at the periodic refresh.
        if self._last_report is None or not self._ready or now - self._last_full_cycle >= self.poll_interval:
            health = await self.manager.health()
            nodes = await self.manager.nodes() if health.ready else {}
            await self._report_cluster(health.ready, health.reason, health.message, nodes)
            self._ready = health.ready
            self._last_full_cycle = now
        if not self._ready or not self.jobs.has_synced:
            return
        statuses = await self.manager.statuses()
        desired = self._desired_units()
        self._add_rejections(desired, statuses)
        changed = await self._stop_failed_jobs(desired, statuses)
        changed = await self._converge(desired, statuses) or changed
        changed = await self._record_tasks(desired, statuses) or changed
        if changed:
            self._fast_until = time.monotonic() + self.fast_poll_window
        if self.services is not None and self.manager.supports_services and self.services.has_synced:
            await self._sync_services(desired)

    # ---- cluster controller --------------------------------------------------------------

    async def _report_cluster(self, ready: bool, reason: str, message: str, nodes: dict) -> None:
        report = (ready, reason, message, {name: node.model_dump() for name, node in nodes.items()})
        now = time.monotonic()
        if report == self._last_report and now - self._last_report_time < self.report_interval:
            return
        current = await self.client.get(Cluster, self.cluster)
        cluster = Cluster.model_validate(current)
        status = cluster.status
        was_ready = status.phase is ClusterPhase.READY
        first_report = status.phase is ClusterPhase.INIT
        status.phase = ClusterPhase.READY if ready else ClusterPhase.ERROR
        status.conditions = set_condition(
            status.conditions,
            Condition(
                type="Ready",
                status="True" if ready else "False",
                reason=reason or ("ClusterReady" if ready else "ClusterUnreachable"),
                message=message,
            ),
        )
        if ready:
            status.nodes = nodes
            status.observed_time = utc_now()
        cluster.metadata.resource_version = None
        await self.client.update_status(cluster)
        self._last_report, self._last_report_time = report, now
        if ready != was_ready or first_report:
            # Transitions only, as Kubernetes records NodeReady and NodeNotReady, so that
            # `skyshift describe cluster` shows when the cluster went away and came back. The first
            # report counts as one, so the events of a Cluster that never becomes ready give the reason.
            event_type, event_reason = ("Normal", "ClusterReady") if ready else ("Warning", "ClusterNotReady")
            text = message or ("the cluster is ready" if ready else "the cluster is not ready")
            await record_event(self.client, cluster, event_type, event_reason, single_line(text), f"skylet/{self.cluster}")

    def _task_writes_seen(self) -> bool:
        """Forget the task writes that the Job informer now shows; return True if there were any.

        The scheduler holds a started replica's reservation until a capacity report observed after
        the scheduler saw the start arrives. Its handler runs when this informer applies the write
        (when the scheduler runs in this process, on the same informer), so a report written once
        the write is seen is observed after that moment. Without it, the started replica would
        count twice, in the report and in the reservation, until the periodic refresh.
        """
        seen = []
        for (namespace, name), version in self._unseen_task_writes.items():
            job = self.jobs.get(name, namespace)
            current = job.metadata.resource_version if job is not None else None
            if job is None or not (current or "").isdigit() or int(current) >= version:
                seen.append((namespace, name))
        for key in seen:
            del self._unseen_task_writes[key]
        return bool(seen)

    async def _report_error(self, message: str) -> None:
        try:
            await self._report_cluster(False, "ClusterManagerError", message, {})
        except SkyShiftError as error:
            logger.warning("Skylet %s: could not record the error on the Cluster: %s", self.cluster, error)

    # ---- flow controller -----------------------------------------------------------------

    def _desired_units(self) -> dict[str, tuple[Job, WorkUnit]]:
        desired = {}
        for job in self.jobs.list():
            share = job.status.clusters.get(self.cluster)
            if share is None or self.cluster not in job.status.placement or not share.replica_indices:
                continue
            for part in share.work_units():
                unit = WorkUnit(job, self.cluster, tuple(part.replica_indices), job.spec.replicas, part.generation)
                desired[unit.key] = (job, unit)
        return desired

    def _add_rejections(self, desired: dict[str, tuple[Job, WorkUnit]], statuses: dict[str, WorkStatus]) -> None:
        """Put the status of each rejected share into `statuses`, so that it is not submitted again and
        its Failed replicas are written until the Job shows them.

        A rejection is known from this skylet's submit, or after a restart from the Job, whose
        replicas of the share are all Failed with reason SUBMIT_REJECTED. Rejections of shares that
        no Job places here any more are forgotten."""
        for key in [key for key in self._rejections if key not in desired]:
            del self._rejections[key]
        for key, (job, unit) in desired.items():
            if key not in self._rejections:
                message = _rejection_in_job(job, unit)
                if message is None:
                    continue
                self._rejections[key] = WorkStatus.rejected(unit, message)
            # The rejection wins over what the backend lists, such as a partial share.
            statuses[key] = self._rejections[key]

    async def _stop_failed_jobs(
        self, desired: dict[str, tuple[Job, WorkUnit]], statuses: dict[str, WorkStatus]
    ) -> bool:
        """Stop the unfinished replicas of Failed Jobs on this cluster, and tell whether it stopped any.

        The backend cancels such a share (`ClusterManager.cancel`), which keeps the output of its
        finished replicas. `statuses` gets the share's tasks with each unfinished one Failed, reason
        STOPPED_JOB_FAILED, for `_record_tasks` to write, and that record stays in place of what the
        backend reports later for the cancelled replicas. A share that the backend does not list
        gets the same from the tasks that the Job shows, so a replica recorded as Running, or never
        started, does not stay so after a failed write."""
        stopped: dict[tuple[str, str], tuple[Job, list[int]]] = {}
        self._stopped &= set(desired)
        for key, (job, unit) in desired.items():
            if job.status.phase is not JobPhase.FAILED:
                continue
            reported = statuses.get(key)
            share = job.status.clusters[self.cluster]
            if reported is not None:
                tasks, ids = dict(reported.tasks), list(reported.manager_job_ids)
            else:
                recorded = share.tasks
                tasks = {str(index): recorded[str(index)] for index in unit.replica_indices if str(index) in recorded}
                ids = list(share.manager_job_ids)
            unfinished = [
                index for index in unit.replica_indices
                if str(index) not in tasks or tasks[str(index)].state not in _FINISHED_STATES
            ]  # fmt: skip
            stopped_before = {
                str(index): share.tasks[str(index)]
                for index in unit.replica_indices
                if str(index) in share.tasks and share.tasks[str(index)].reason == STOPPED_JOB_FAILED
            }
            if not unfinished and not stopped_before:
                continue
            if reported is not None and unfinished:
                first = key not in self._stopped
                if first:
                    logger.info(
                        "Skylet %s: stopping work %s, replicas %s of Job %s/%s, which failed",
                        self.cluster, key, unfinished, job.metadata.namespace or "default", job.metadata.name,
                    )  # fmt: skip
                await self.manager.cancel(key)
                if first:
                    self._stopped.add(key)
                    job_key = (job.metadata.namespace or "default", job.metadata.name)
                    stopped.setdefault(job_key, (job, []))[1].extend(unfinished)
            for index in unfinished:
                task = tasks.get(str(index))
                started = task is not None and (task.state == "Running" or task.restarts > 0)
                tasks[str(index)] = TaskStatus(
                    state="Failed",
                    exit_code=task.exit_code if task is not None else None,
                    reason=STOPPED_JOB_FAILED,
                    message="stopped because the Job failed" if started else "not started because the Job failed",
                    restarts=task.restarts if task is not None else 0,
                )
            tasks.update(stopped_before)
            statuses[key] = WorkStatus(
                key=key,
                tasks=dict(sorted(tasks.items(), key=lambda item: int(item[0]))),
                manager_job_ids=ids,
            )
        for job, indices in stopped.values():
            message = f"stopped replicas {sorted(indices)} on cluster {self.cluster} because the Job failed"
            await record_event(self.client, job, "Normal", "Stopped", message, f"skylet/{self.cluster}")
        return bool(stopped)

    def _stopped_message(
        self, job: Job, key: str, indices: list[int], desired: dict[str, tuple[Job, WorkUnit]]
    ) -> str:
        """Say which replicas of deleted work `key` are gone from this cluster and which run again here
        in another submission, as after a scale-down that changed their share."""
        if not indices:
            return f"stopped work {key} on cluster {self.cluster}, where the Job no longer places it"
        placed = {
            index
            for other, unit in desired.values()
            if other.metadata.uid == job.metadata.uid
            for index in unit.replica_indices
        }
        again = [index for index in indices if index in placed]
        removed = [index for index in indices if index not in placed]
        stopped = f"stopped replicas {indices} on cluster {self.cluster}"
        if not again:
            return f"{stopped}, where the Job no longer places them"
        if not removed:
            return f"{stopped} to run them again in a new submission, because a share is submitted whole"
        removed_text, again_text = _replicas(removed, "is", "are"), _replicas(again, "runs", "run")
        return (
            f"{stopped}: {removed_text} no longer placed here, and {again_text} again in a new submission, "
            "because a share is submitted whole"
        )

    async def _converge(self, desired: dict[str, tuple[Job, WorkUnit]], statuses: dict[str, WorkStatus]) -> bool:
        """Submit the shares the backend lacks, delete the work no Job wants, and tell whether it did either.

        Up to the manager's `max_parallel_submits` submissions run at once."""
        changed = False
        unwanted = sorted(set(statuses) - set(desired))
        jobs = {job.metadata.uid: job for job in self.jobs.list()} if unwanted else {}
        for key in unwanted:
            changed = True
            logger.info("Skylet %s: deleting work %s, which no Job places here any more", self.cluster, key)
            await self.manager.delete(key)
            status = statuses.pop(key, None)
            job = jobs.get(key.rpartition("-")[0])
            if job is not None:
                # The Job still exists, so it was scaled down or its replicas moved. The event names
                # the replicas that stopped.
                indices = sorted(int(index) for index in status.tasks) if status is not None and status.tasks else []
                message = self._stopped_message(job, key, indices, desired)
                await record_event(self.client, job, "Normal", "Stopped", message, f"skylet/{self.cluster}")
        missing = [
            (key, job, unit)
            for key, (job, unit) in sorted(desired.items())
            if (key not in statuses or statuses[key].partial)
            # Finished work that the backend has since purged is not run again: neither a finished
            # Job's, nor a share whose replicas the Job records as Succeeded.
            and job.status.phase not in (JobPhase.SUCCEEDED, JobPhase.FAILED)
            and not (key not in statuses and self._succeeded_in_job(job, unit))
        ]
        for key, job, unit in missing:
            if key not in statuses and self._started_in_job(job, unit):
                logger.warning(
                    "Skylet %s: the backend no longer lists work %s of Job %s/%s, whose replicas %s had started; "
                    "submitting them again",
                    self.cluster, key, job.metadata.namespace, job.metadata.name, list(unit.replica_indices),
                )  # fmt: skip
        slots = asyncio.Semaphore(max(1, self.manager.max_parallel_submits))

        async def submit(key: str, job: Job, unit: WorkUnit) -> bool:
            async with slots:
                return await self._submit(key, job, unit, statuses)

        results = await asyncio.gather(*(submit(*item) for item in missing), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return changed or any(results)

    def _recorded_tasks(self, job: Job, unit: WorkUnit) -> list:
        """Return the Job's recorded task of each replica of `unit` on this cluster; None for a replica without one."""
        share = job.status.clusters.get(self.cluster)
        tasks = share.tasks if share is not None else {}
        return [tasks.get(str(index)) for index in unit.replica_indices]

    def _succeeded_in_job(self, job: Job, unit: WorkUnit) -> bool:
        """Tell whether the Job records every replica of `unit` as Succeeded, so that work the backend
        purged after it ended is not run again. Under restart_policy Always a replica is meant to run
        again whatever its end, as a Kubernetes pod's container is."""
        if job.spec.restart_policy is RestartPolicy.ALWAYS:
            return False
        return all(task is not None and task.state == "Succeeded" for task in self._recorded_tasks(job, unit))

    def _started_in_job(self, job: Job, unit: WorkUnit) -> bool:
        return any(task is not None and task.state != "Pending" for task in self._recorded_tasks(job, unit))

    async def _submit(self, key: str, job: Job, unit: WorkUnit, statuses: dict[str, WorkStatus]) -> bool:
        """Submit one share, record an Event, and return True when the backend returned a status,
        a rejected one included."""
        logger.info(
            "Skylet %s: submitting Job %s/%s replicas %s (generation %d)",
            self.cluster, job.metadata.namespace, job.metadata.name, list(unit.replica_indices), unit.generation,
        )  # fmt: skip
        try:
            status = await self.manager.submit(unit)
        except ClusterManagerError as error:
            # One Job's failed submission must not hold back the others. It is retried next cycle.
            logger.warning(
                "Skylet %s: submitting Job %s/%s failed, retrying next cycle: %s",
                self.cluster, job.metadata.namespace, job.metadata.name, error,
            )  # fmt: skip
            await record_event(self.client, job, "Warning", "SubmitFailed", str(error), f"skylet/{self.cluster}")
            return False
        except Exception as error:  # noqa: BLE001 - a plugin bug in one submission, not the cluster's failure
            message = (
                f"{describe_error(error)} in submit() of {type(self.manager).__qualname__}; this is a bug in the "
                "cluster manager plugin, and the submission is retried next cycle"
            )
            logger.warning(
                "Skylet %s: submitting Job %s/%s raised %s",
                self.cluster, job.metadata.namespace, job.metadata.name, message, exc_info=True,
            )  # fmt: skip
            await record_event(self.client, job, "Warning", "SubmitFailed", message, f"skylet/{self.cluster}")
            return False
        indices = list(unit.replica_indices)
        if status.rejection is not None:
            statuses[key] = await self._record_rejection(job, unit, status)
            return True
        statuses[key] = status
        ids = ", ".join(status.manager_job_ids) or "n/a"
        await record_event(
            self.client, job, "Normal", "Submitted",
            f"replicas {indices} submitted to cluster {self.cluster} (backend ids: {ids})", f"skylet/{self.cluster}",
        )  # fmt: skip
        return True

    async def _record_rejection(self, job: Job, unit: WorkUnit, status: WorkStatus) -> WorkStatus:
        """Remember a share that the backend rejected, record a Warning Event with the backend's
        error text, and return the share's status: every replica Failed with that text."""
        assert status.rejection is not None
        # The same Failed tasks for every backend, whatever tasks this one filled in.
        rejected = WorkStatus.rejected(unit, status.rejection)
        rejected.warnings = list(status.warnings)
        self._rejections[unit.key] = rejected
        indices = list(unit.replica_indices)
        text = single_line(status.rejection)
        logger.warning(
            "Skylet %s: the cluster rejected Job %s/%s replicas %s, which are Failed and not submitted again: %s",
            self.cluster, job.metadata.namespace, job.metadata.name, indices, text,
        )  # fmt: skip
        message = f"cluster {self.cluster} rejected replicas {indices}: {text}"
        await record_event(self.client, job, "Warning", SUBMIT_REJECTED, message, f"skylet/{self.cluster}")
        return rejected

    # ---- job controller ------------------------------------------------------------------

    async def _record_tasks(self, desired: dict[str, tuple[Job, WorkUnit]], statuses: dict[str, WorkStatus]) -> bool:
        """Write each share's task states into its Job when they changed, and tell whether any did.

        A share of several submissions (see `ClusterShare.units`) is written as one: the tasks of
        every submission that the backend reports, and the recorded ones of those it does not."""
        units_of: dict[tuple[str, str], list[tuple[str, Job, WorkUnit]]] = {}
        for key, (job, unit) in desired.items():
            units_of.setdefault((job.metadata.namespace or "default", job.metadata.name), []).append((key, job, unit))
        changed = False
        for parts in units_of.values():
            job = parts[0][1]
            reported = [(key, unit, statuses[key]) for key, _, unit in parts if key in statuses]
            if not reported:
                continue
            for key, _, status in reported:
                for warning in status.warnings:
                    if (key, warning) not in self._warned:
                        self._warned.add((key, warning))
                        await record_event(self.client, job, "Warning", "BackendWarning", warning, f"skylet/{self.cluster}")
            share = job.status.clusters[self.cluster]
            merged = _merged_status(share, parts, reported)
            tasks = {index: task.model_dump(mode="json") for index, task in merged.tasks.items()}
            known = {index: task.model_dump(mode="json") for index, task in share.tasks.items()}
            if tasks == known and merged.manager_job_ids == share.manager_job_ids:
                continue
            # The test operation makes the write a no-op if the share was re-placed meanwhile.
            base = f"/status/clusters/{self.cluster}"
            patch = [
                {"op": "test", "path": f"{base}/generation", "value": share.generation},
                {"op": "replace", "path": f"{base}/tasks", "value": tasks},
                {"op": "replace", "path": f"{base}/manager_job_ids", "value": list(merged.manager_job_ids)},
            ]
            try:
                written = await self.client.patch(
                    Job, job.metadata.name, patch, job.metadata.namespace, patch_type="json", subresource="status"
                )
            except (InvalidError, NotFoundError, ConflictError) as error:
                logger.info(
                    "Skylet %s: skipped a stale status write for Job %s: %s", self.cluster, job.metadata.name, error
                )
                continue
            except ForbiddenError as error:
                # One Job's refused write must not hold back the others, nor fail the cluster.
                logger.warning(
                    "Skylet %s: may not write the status of Job %s/%s, so its replicas' states are not recorded; "
                    "the controller manager's Role may predate this version (run skyshift bootstrap again): %s",
                    self.cluster, job.metadata.namespace, job.metadata.name, error.message,
                )  # fmt: skip
                continue
            changed = True
            version = str(written.get("metadata", {}).get("resource_version") or "")
            if version.isdigit():
                self._unseen_task_writes[(job.metadata.namespace or "default", job.metadata.name)] = int(version)
            await self._record_restarts(job, share, merged)
        return changed

    async def _record_restarts(self, job: Job, share: ClusterShare, status: WorkStatus) -> None:
        """Record a Restarted Event for each replica whose restart count grew since the Job last showed it.

        The message stays the same from one restart to the next, so repeats count up on one Event, by
        as many restarts as the count grew (a backend may restart a replica twice between two polls)."""
        for index, task in sorted(status.tasks.items()):
            known = share.tasks.get(index)
            grown = task.restarts - (known.restarts if known is not None else 0)
            if grown <= 0:
                continue
            message = f"replica {index} restarted on cluster {self.cluster} (restart_policy {job.spec.restart_policy.value})"
            await record_event(self.client, job, "Normal", "Restarted", message, f"skylet/{self.cluster}", count=grown)

    # ---- service controller --------------------------------------------------------------

    async def _sync_services(self, desired: dict[str, tuple[Job, WorkUnit]]) -> None:
        """Expose each Service whose selector matches Jobs with replicas here; remove the others."""
        wanted: dict[tuple[str, str], tuple[Service, list[str]]] = {}
        for service in self.services.list():
            selector = service.spec.selector
            if not selector:
                continue
            namespace = service.metadata.namespace or "default"
            keys = [
                key
                for key, (job, _) in desired.items()
                if (job.metadata.namespace or "default") == namespace
                and all(job.metadata.labels.get(label) == value for label, value in selector.items())
            ]
            if keys:
                wanted[(namespace, service.metadata.name)] = (service, keys)

        for key in sorted(set(self._exposed) - set(wanted)):
            service, _ = self._exposed.pop(key)
            logger.info("Skylet %s: removing Service %s/%s, which selects no replicas here", self.cluster, *key)
            await self.manager.delete_service(service)
            await self._record_addresses(service, None)

        for key, (service, keys) in sorted(wanted.items()):
            applied = self._exposed.get(key)
            if applied is not None and applied[1] == service.metadata.generation:
                continue
            addresses = await self.manager.create_service(service, keys)
            self._exposed[key] = (service, service.metadata.generation)
            logger.info("Skylet %s: exposed Service %s/%s at %s", self.cluster, *key, ", ".join(addresses) or "<pending>")
            await self._record_addresses(service, addresses)

    async def _record_addresses(self, service: Service, addresses: list[str] | None) -> None:
        """Set (or, with None, remove) this cluster's entry in the Service's status.addresses."""
        patch = {"status": {"addresses": {self.cluster: addresses}}}
        try:
            await self.client.patch(Service, service.metadata.name, patch, service.metadata.namespace, subresource="status")
        except NotFoundError:
            pass  # The Service was deleted meanwhile.


def _merged_status(
    share: ClusterShare, parts: list[tuple[str, Job, WorkUnit]], reported: list[tuple[str, WorkUnit, WorkStatus]]
) -> WorkStatus:
    """Combine the statuses of a share's submissions into one.

    For a submission that the backend does not report, the Job's recorded tasks stand in."""
    if len(parts) == 1:
        return reported[0][2]
    reported_keys = {key for key, _, _ in reported}
    tasks: dict[str, TaskStatus] = {}
    ids: list[str] = []
    for key, _, unit in parts:
        if key not in reported_keys:
            for index in unit.replica_indices:
                if str(index) in share.tasks:
                    tasks[str(index)] = share.tasks[str(index)]
    for key, _, status in reported:
        tasks.update(status.tasks)
        ids += [job_id for job_id in status.manager_job_ids if job_id not in ids]
    return WorkStatus(key=reported[0][0], tasks=dict(sorted(tasks.items(), key=lambda item: int(item[0]))), manager_job_ids=ids)


def _rejection_in_job(job: Job, unit: WorkUnit) -> str | None:
    """Return the message of a rejection that the Job shows for this share, or None.

    The Job shows one when each replica of the share is Failed with reason SUBMIT_REJECTED. The
    scheduler gives a re-placed share no tasks, so the tasks found belong to this placement."""
    share = job.status.clusters.get(unit.cluster)
    if share is None:
        return None
    tasks = [share.tasks.get(str(index)) for index in unit.replica_indices]
    rejected = [task for task in tasks if task is not None and task.state == "Failed" and task.reason == SUBMIT_REJECTED]
    if not rejected or len(rejected) != len(tasks):
        return None
    return rejected[0].message


def _replicas(indices: list[int], singular_verb: str, plural_verb: str) -> str:
    """Name replicas with a verb in agreement: `replica 3 is`, `replicas [2, 3] are`."""
    return f"replica {indices[0]} {singular_verb}" if len(indices) == 1 else f"replicas {indices} {plural_verb}"
