"""SlurmClusterManager, the `slurm` entry point of `skyshift.cluster_managers`.

The skylet of each attached Slurm cluster calls it every poll interval; the API server creates
one to stream logs. All state that matters lives in Slurm. A share of N replicas is one job array
whose name carries the work key, the restart policy and the replica of each task (naming.py), so
a new instance finds earlier submissions instead of submitting again. What an instance keeps in
memory (ended jobs already seen, restart timers, deleted keys) only saves queries, and a new
instance rebuilds it from squeue and the jobcomp file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from skyshift_core.cluster_manager import (
    ClusterHealth,
    ClusterManager,
    ClusterManagerError,
    ConfigError,
    ExecResult,
    WorkStatus,
    WorkUnit,
)
from skyshift_core.objects import NodeResources, RestartPolicy, TaskStatus
from skyshift_slurm import commands
from skyshift_slurm import logs as log_files
from skyshift_slurm.client import CommandClient, SlurmClient, SubmitRejected
from skyshift_slurm.config import JobSettings, SlurmConfig, expand_local_path, parse_config, parse_job_settings
from skyshift_slurm.naming import JobIdentity, array_spec, job_name, name_prefix, parse_job_name, plan_arrays
from skyshift_slurm.nodes import gpu_gres, node_resources, parse_gpus
from skyshift_slurm.records import JobRecord, RecordSource, SubmitRequest
from skyshift_slurm.rest import RestClient
from skyshift_slurm.script import batch_script, exec_command
from skyshift_slurm.states import (
    MAX_RESTART_DELAY_SECONDS,
    backoff_status,
    final_status,
    restart_delay,
    task_status,
    wants_restart,
)
from skyshift_slurm.transport import DEFAULT_PATH, LocalTransport, SshTransport, Transport

logger = logging.getLogger(__name__)

# Entry-point name, and the key of a Job's own settings under `spec.backend`.
MANAGER_NAME = "slurm"
# A submission seen this recently (in seconds) still counts when submit() checks for earlier work,
# so the skylet's statuses() and submit() in one cycle cost one squeue.
OBSERVATION_REUSE_SECONDS = 2.0
# Seconds between checks whether followed replicas have ended.
FOLLOW_CHECK_SECONDS = 1.0
# Seconds that a follow keeps reading after the replicas ended, for output still on its way.
FOLLOW_DRAIN_SECONDS = 1.0
# Seconds a deleted key stays excluded after Slurm stopped listing its jobs.
DELETED_KEY_MEMORY_SECONDS = 3600.0
# jobcomp lines with these states mark a requeue of a job that later ended again.
REQUEUE_STATES = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"})
# Seconds a one-shot `skyshift exec` command may run before it is stopped.
EXEC_TIMEOUT_SECONDS = 300.0
# Seconds after a restart during which a record that still shows the restarted attempt ended is
# taken as out of date. Past it, the restart is taken as lost and made again.
STALE_RESTART_SECONDS = 60.0


@dataclass(frozen=True)
class _EndedAttempt:
    """An ended attempt of a task that this manager restarted, with the time of the restart."""

    restarts: int
    start_time: float | None
    end_time: float | None
    restarted_at: float

    def shown_by(self, record: JobRecord, restarts: int) -> bool:
        """Tell whether an ended record of the task shows this attempt rather than a later one.

        The start and end times decide, because slurmctld may raise RestartCnt before it lists the
        requeued task as PENDING. Without times, a record whose restart count is not higher shows
        this attempt."""
        if self.end_time is not None and record.end_time is not None:
            return (record.start_time, record.end_time) == (self.start_time, self.end_time)
        return restarts <= self.restarts


@dataclass
class _Replica:
    """The latest Slurm record of one replica, with the identity parsed from its job name."""

    identity: JobIdentity
    record: JobRecord

    @property
    def ordering(self) -> tuple[int, int, int]:
        # A later attempt wins; among records of one task a live one wins over the jobcomp file.
        live = 1 if self.record.source is RecordSource.QUEUE else 0
        return self.identity.attempt, _job_number(self.record.array_job_id), live


class SlurmClusterManager(ClusterManager):
    """Runs SkyShift's work on one Slurm cluster through Slurm's commands (locally or over ssh) or
    slurmrestd. Each share of a Job is one job array; see the README for what each mode can do."""

    provides: ClassVar[str] = "Slurm clusters, through Slurm's commands (locally or over ssh) or slurmrestd"
    supports_logs: ClassVar[bool] = True
    # Through srun, with interface cli or ssh only: slurmrestd cannot start job steps.
    supports_exec: ClassVar[bool] = True
    # sbatch calls (or slurmrestd submissions) for different shares may run side by side.
    max_parallel_submits: ClassVar[int] = 4

    def __init__(self, name: str, config: Mapping[str, Any]):
        parsed = parse_config(config)
        super().__init__(name, parsed.to_dict())
        self.settings: SlurmConfig = parsed
        self.client: SlurmClient = build_client(parsed)
        self._prefix = name_prefix(name)
        self._output_root: str | None = None
        if parsed.interface == "cli":
            self._output_root = expand_local_path(parsed.output_root(name))
        elif not parsed.output_root(name).startswith("~"):
            self._output_root = parsed.output_root(name)

        # Ended tasks already seen (task id -> record), so that they stay known after slurmctld
        # purges them, and the number of requeues the jobcomp file records per task.
        self._finished: dict[str, JobRecord] = {}
        self._requeues: dict[str, int] = {}
        self._active: set[str] = set()
        self._jobcomp_read = False
        # Deleted keys (key -> when), left out of statuses while Slurm still lists their jobs.
        self._deleted: dict[str, float] = {}
        # Cancelled keys (key -> when): listed as usual, but their replicas are not restarted.
        self._cancelled: dict[str, float] = {}
        self._abandoned: set[str] = set()
        self._units: dict[str, WorkUnit] = {}
        self._rejected: dict[str, WorkStatus] = {}
        self._restart_due: dict[str, float] = {}
        # Restarts this manager made (task id -> the ended attempt it restarted). A record that still
        # shows that attempt ended is out of date, and must not restart it again.
        self._restarted: dict[str, _EndedAttempt] = {}
        self._observation: tuple[float, dict[str, list[_Replica]]] | None = None
        # One queue read at a time for submit's check of what exists.
        self._observe_lock = asyncio.Lock()
        # Shares submitted since the queue read began (key -> (when, the status submit returned)),
        # which that read may not list; a later submit of the same key returns the status.
        self._submitted_since: dict[str, tuple[float, WorkStatus]] = {}
        self._gpu_types: set[str] = set()
        self._max_restart_delay = MAX_RESTART_DELAY_SECONDS
        self._cluster_settings_read = False

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """Check a Slurm cluster's spec.config and return it normalized (defaults filled in)."""
        return parse_config(config).to_dict()

    @classmethod
    def validate_job_settings(cls, settings: Mapping[str, Any] | None) -> dict[str, Any]:
        """Check a Job's `spec.backend.slurm` section (partition, account, qos, time_limit) and
        return it normalized; raise ConfigError naming the field."""
        return parse_job_settings(settings).to_dict()

    async def start(self) -> None:
        await self.client.start()

    async def stop(self) -> None:
        await self.client.stop()

    # ---- cluster --------------------------------------------------------------------------

    async def health(self) -> ClusterHealth:
        """Ping slurmctld (`scontrol ping`, or slurmrestd's ping); report failures as ready=False, never raise."""
        try:
            up, reason, message = await self.client.ping()
        except Exception as error:  # noqa: BLE001 - health reports any failure instead of raising it.
            logger.warning("Health check of Slurm cluster %s failed: %s: %s", self.name, type(error).__name__, error)
            return ClusterHealth(ready=False, reason="HealthCheckFailed", message=f"{type(error).__name__}: {error}")
        return ClusterHealth(ready=up, reason=reason, message=message)

    async def nodes(self) -> dict[str, NodeResources]:
        records = await self.client.list_nodes(self.settings.partition)
        self._gpu_types = {kind for record in records for kind in parse_gpus(record.gres) if kind}
        return node_resources(records)

    # ---- work -----------------------------------------------------------------------------

    async def submit(self, unit: WorkUnit) -> WorkStatus:
        """Submit a share as one job array, or return the status of the arrays already submitted
        under `unit.key`. `warnings` of the returned status list what the cluster cannot honour,
        such as an image with container_runtime none. A share with invalid `spec.backend.slurm`
        settings, or whose request Slurm rejects for good, gets a `WorkStatus.rejected` status
        with the error text (sbatch's own message) instead of an error, so the skylet does not
        submit it again."""
        key = unit.key
        job = f"{unit.job.metadata.namespace or 'default'}/{unit.job.metadata.name}"
        _check_key(key)
        if key in self._rejected:
            return self._rejected[key]
        if key in self._submitted_since:
            return self._submitted_since[key][1]
        self._units[key] = unit

        existing = await self._recent_observation()
        if key in existing:
            logger.debug("Work %s of Job %s already exists on Slurm cluster %s", key, job, self.name)
            return await self._status(key, existing[key], act=False)

        try:
            settings = parse_job_settings(unit.job.spec.backend.get(MANAGER_NAME), f"spec.backend.{MANAGER_NAME}")
        except ConfigError as error:
            return self._reject(unit, str(error))

        work_dir = await self._work_dir(key)
        if self.settings.interface != "rest":
            await self.client.prepare_directory(work_dir)
        try:
            job_ids, warnings = await self._submit_arrays(unit, sorted(unit.replica_indices), 0, settings, work_dir)
        except SubmitRejected as error:
            return self._reject(unit, str(error))
        logger.info(
            "Submitted replicas %s of Job %s to Slurm cluster %s as job %s (work %s)",
            list(unit.replica_indices), job, self.name, ", ".join(job_ids), key,
        )  # fmt: skip
        for warning in warnings:
            logger.info("Job %s on Slurm cluster %s: %s", job, self.name, warning)
        tasks = {
            str(index): TaskStatus(
                state="Pending", reason="Submitted", message=f"submitted as Slurm job {', '.join(job_ids)}"
            )
            for index in unit.replica_indices
        }
        status = WorkStatus(key=key, tasks=tasks, manager_job_ids=job_ids, warnings=warnings)
        self._submitted_since[key] = (time.monotonic(), status)
        return status

    async def delete(self, key: str) -> None:
        """Cancel every Slurm job of `key`, and stop listing the key; jobs that already ended or are
        gone need nothing."""
        await self._cancel_jobs(key)
        self._cancelled.pop(key, None)
        self._forget(key)
        self._submitted_since.pop(key, None)
        self._deleted[key] = time.monotonic()
        self._observation = None

    async def cancel(self, key: str) -> None:
        """Cancel the Slurm jobs of `key` that have not ended, and restart none of its replicas.

        The work stays listed, with its cancelled replicas Failed (Slurm's CANCELLED), and its
        output files stay for `logs`."""
        _check_key(key)
        self._cancelled[key] = time.monotonic()
        await self._cancel_jobs(key)
        self._observation = None

    async def _cancel_jobs(self, key: str) -> None:
        live = await self.client.list_jobs()
        job_ids = sorted(
            {record.array_job_id for record in live if _key_of(record, self.name) == key and not record.is_terminal},
            key=_job_number,
        )
        if job_ids:
            await self.client.cancel(job_ids)
            logger.info("Cancelled Slurm jobs %s of work %s on cluster %s", ", ".join(job_ids), key, self.name)

    async def statuses(self) -> dict[str, WorkStatus]:
        """Status of every share on this cluster: one squeue (or slurmrestd jobs request) per call,
        plus a read of the jobcomp file on the first call and when tasks left the queue.

        Replicas that ended and restart under their policy are requeued or resubmitted here once
        their backoff has passed."""
        await self._read_cluster_settings()
        grouped = await self._observe()
        statuses: dict[str, WorkStatus] = {}
        for key, replicas in grouped.items():
            statuses[key] = await self._status(key, replicas, act=True)
        for key, rejected in self._rejected.items():
            statuses.setdefault(key, rejected)
        return statuses

    async def logs(
        self, key: str, replica: int | None = None, *, follow: bool = False, tail: int | None = None
    ) -> AsyncIterator[tuple[int, str]]:
        """Yield (replica index, line) from the replicas' output files, `tail` last lines of each.

        With `follow`, keep yielding new lines until every selected replica has ended for good.
        cli and ssh read the files where the commands run. slurmrestd serves no files, so rest
        reads them only when the output directory is readable on this host, and raises
        ClusterManagerError otherwise."""
        if tail is not None and tail < 0:
            raise ClusterManagerError(f"invalid tail {tail}: expected a number of lines >= 0", retryable=False)
        transport = self._log_transport()
        work_dir = await self._work_dir(key)

        listing = await transport.run(log_files.list_command(work_dir), timeout=self.settings.command_timeout_seconds)
        indices = set(log_files.replica_files(listing.output))
        try:
            jobs = await self.client.list_jobs()
        except ClusterManagerError as error:
            if not indices:
                raise
            # The output files are readable without slurmctld, so its outage must not hide them.
            logger.info("Slurm cluster %s: reading logs of %s without the job list: %s", self.name, key, error)
            jobs = []
        live = [item for item in jobs if _key_of(item, self.name) == key]
        for record in live:
            identity = parse_job_name(record.name, self.name)
            index = identity.replica_of_task(record.array_task_id) if identity else None
            if index is not None:
                indices.add(index)
        if not indices:
            raise ClusterManagerError(
                f"no work with key {key!r} on Slurm cluster {self.name!r}: no Slurm job and no output in {work_dir}",
                retryable=False,
            )
        if replica is not None and replica not in indices:
            raise ClusterManagerError(
                f"replica {replica} is not part of work {key!r} on Slurm cluster {self.name!r}, which has replicas "
                f"{', '.join(str(index) for index in sorted(indices))}",
                retryable=False,
            )
        selected = [replica] if replica is not None else sorted(indices)
        command = log_files.tail_command({index: f"{work_dir}/replica-{index}.out" for index in selected}, tail, follow)

        if not follow:
            result = await transport.run(command, timeout=self.settings.command_timeout_seconds)
            for line in result.output.splitlines():
                item = log_files.parse_line(line)
                if item is not None:
                    yield item
            return

        process = await transport.open_stream(command)
        watcher = asyncio.ensure_future(self._close_when_ended(key, set(selected), transport, process))
        try:
            assert process.stdout is not None
            while raw := await process.stdout.readline():
                item = log_files.parse_line(raw.decode(errors="replace").rstrip("\n"))
                if item is not None:
                    yield item
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, ClusterManagerError):
                await watcher
            await transport.close_stream(process)

    # ---- exec -----------------------------------------------------------------------------

    async def exec(
        self, key: str, replica: int, command: list[str], tty: bool = False, stdin: bool | str = False
    ) -> ExecResult:
        """Run `command` once as a step of the replica's Slurm job (`srun --jobid=ID --overlap`) and
        return its output and exit code.

        The step runs on the replica's node, within its allocation, in the replica's work directory
        and with its variables (SkyShift's and the Job's envs) added to the environment that the
        transport passes to Slurm's commands, outside any container of `container_runtime`.
        `tty` is ignored here: a one-shot command gets no terminal."""
        transport, job_id = await self._exec_target(key, replica, command)
        command = await self._in_replica(key, replica, command)
        data: bytes | None = None
        if stdin is True:
            data = b""
        elif isinstance(stdin, str):
            data = stdin.encode()
        result = await transport.run(commands.srun_command(job_id, command), timeout=EXEC_TIMEOUT_SECONDS, stdin=data)
        stderr = commands.SRUN_EXIT_LINE.sub("", result.stderr)
        return ExecResult(stdout=result.output, stderr=stderr, exit_code=result.returncode)

    async def exec_interactive(self, key: str, replica: int, command: list[str], *, tty: bool, stdin: bool) -> int:
        """Connect this process's terminal to `command`, run as a step of the replica's Slurm job
        (`srun --pty` with `tty`); return its exit code."""
        transport, job_id = await self._exec_target(key, replica, command)
        command = await self._in_replica(key, replica, command)
        return await transport.run_attached(commands.srun_command(job_id, command, pty=tty), tty=tty)

    async def _in_replica(self, key: str, replica: int, command: list[str]) -> list[str]:
        """Wrap an exec command so that it starts in the replica's work directory with its variables."""
        return exec_command(await self._work_dir(key), replica, command)

    async def _exec_target(self, key: str, replica: int, command: list[str]) -> tuple[Transport, str]:
        """Return the transport and the Slurm job id of the running replica `replica` of work `key`,
        after checking that `command` names a program."""
        if not command:
            raise ClusterManagerError("invalid command []: give the program to run and its arguments", retryable=False)
        _check_key(key)
        subject = f"replica {replica} on Slurm cluster {self.name!r}"
        if not isinstance(self.client, CommandClient):
            raise ClusterManagerError(
                f"cannot run a command in {subject}: slurmrestd cannot start job steps; attach the cluster "
                "with interface cli or ssh, or run srun --jobid=ID --overlap on the cluster",
                retryable=False,
            )
        replicas = [
            _Replica(identity, record)
            for record in await self.client.list_jobs()
            if (identity := parse_job_name(record.name, self.name)) is not None
            and identity.key == key
            and identity.replica_of_task(record.array_task_id) == replica
        ]
        if not replicas:
            raise ClusterManagerError(
                f"cannot run a command in {subject}: Slurm lists no job of it (work {key!r}), so it has ended or "
                "was never submitted; commands run only in running replicas",
                retryable=False,
            )
        record = max(replicas, key=lambda item: item.ordering).record
        if record.state != "RUNNING":
            raise ClusterManagerError(
                f"cannot run a command in {subject}: its Slurm job {record.task_id} is {record.state}; "
                "commands run only in running replicas",
                retryable=False,
            )
        return self.client.transport, record.job_id

    # ---- observation ----------------------------------------------------------------------

    async def _observe(self) -> dict[str, list[_Replica]]:
        """Read the queue (and the jobcomp file when needed); return each key's latest replica records."""
        started = time.monotonic()
        live = [record for record in await self.client.list_jobs() if record.name.startswith(self._prefix)]
        live_ids = {record.task_id for record in live}
        vanished = self._active - live_ids
        if not self._jobcomp_read or vanished:
            self._remember_jobcomp(await self.client.read_jobcomp(self._prefix))
            self._jobcomp_read = True
        for record in live:
            if record.is_terminal:
                self._finished[record.task_id] = record
        self._active = {record.task_id for record in live if not record.is_terminal}

        records = {record.task_id: record for record in live}
        for task_id, record in self._finished.items():
            records.setdefault(task_id, record)

        grouped: dict[str, dict[int, _Replica]] = {}
        for record in records.values():
            identity = parse_job_name(record.name, self.name)
            if identity is None or identity.key in self._deleted or record.array_job_id in self._abandoned:
                continue
            index = identity.replica_of_task(record.array_task_id)
            if index is None:
                continue
            candidate = _Replica(identity, record)
            current = grouped.setdefault(identity.key, {}).get(index)
            if current is None or candidate.ordering > current.ordering:
                grouped[identity.key][index] = candidate

        # A deleted key is forgotten an hour after its deletion once Slurm lists none of its jobs.
        # A later jobcomp read may bring its cancelled jobs back; the skylet then deletes the key
        # once more, which needs no Slurm command because the jobs have ended.
        keys_with_live_jobs = {_key_of(record, self.name) for record in live}
        now = time.monotonic()
        for key, deleted_at in list(self._deleted.items()):
            if key not in keys_with_live_jobs and now - deleted_at > DELETED_KEY_MEMORY_SECONDS:
                del self._deleted[key]
        result = {key: [replicas[index] for index in sorted(replicas)] for key, replicas in grouped.items()}
        self._observation = (time.monotonic(), result)
        # Submissions that ended before this read began are in it.
        self._submitted_since = {key: entry for key, entry in self._submitted_since.items() if entry[0] >= started}
        return result

    async def _recent_observation(self) -> dict[str, list[_Replica]]:
        async with self._observe_lock:
            if self._observation is not None and time.monotonic() - self._observation[0] < OBSERVATION_REUSE_SECONDS:
                return self._observation[1]
            return await self._observe()

    def _remember_jobcomp(self, history: list[JobRecord]) -> None:
        for record in history:
            if _key_of(record, self.name) in self._deleted:
                continue
            if record.state in REQUEUE_STATES:
                self._requeues[record.task_id] = self._requeues.get(record.task_id, 0) + 1
            elif record.is_terminal:
                self._finished[record.task_id] = record

    async def _read_cluster_settings(self) -> None:
        """Learn MinJobAge once, because a task can only be requeued while slurmctld keeps its record."""
        if self._cluster_settings_read or not self.client.supports_requeue:
            return
        try:
            settings = await self.client.settings()
        except ClusterManagerError as error:
            logger.warning("Cannot read the settings of Slurm cluster %s, will retry: %s", self.name, error)
            return
        self._cluster_settings_read = True
        age = settings.get("MinJobAge", "").split()[0] if settings.get("MinJobAge") else ""
        if age.isdigit() and int(age) > 0:
            self._max_restart_delay = min(MAX_RESTART_DELAY_SECONDS, max(1.0, int(age) / 2))

    # ---- status and restarts --------------------------------------------------------------

    async def _status(self, key: str, replicas: list[_Replica], *, act: bool) -> WorkStatus:
        tasks = {}
        for replica in replicas:
            tasks[str(replica.identity.replica_of_task(replica.record.array_task_id))] = await self._task(replica, act)
        job_ids = sorted({replica.record.array_job_id for replica in replicas}, key=_job_number)
        return WorkStatus(key=key, tasks=tasks, manager_job_ids=job_ids)

    async def _task(self, replica: _Replica, act: bool) -> TaskStatus:
        identity, record = replica.identity, replica.record
        restarts = identity.attempt + (
            record.restart_count if record.source is RecordSource.QUEUE else self._requeues.get(record.task_id, 0)
        )
        policy, limit = identity.restart_policy, self.settings.max_restarts
        if not record.is_terminal:
            # The entry in _restarted stays, because a slower read may yet show the restarted attempt ended.
            self._restart_due.pop(record.task_id, None)
            return task_status(record, restarts)
        restarted = self._restarted.get(record.task_id)
        if (
            restarted is not None
            and restarted.shown_by(record, restarts)
            and time.monotonic() - restarted.restarted_at < STALE_RESTART_SECONDS
        ):
            # This attempt was restarted already. The record comes from a queue read that overlapped
            # the requeue, or from slurmctld before it lists the requeued task as PENDING.
            return _restarting_status(record, restarted.restarts)
        if identity.key in self._cancelled or not wants_restart(record, policy, restarts, limit):
            self._restart_due.pop(record.task_id, None)
            return final_status(record, restarts, limit, policy)

        can_requeue = self.client.supports_requeue and record.source is RecordSource.QUEUE
        if not can_requeue and identity.key not in self._units:
            status = final_status(record, restarts, limit, policy)
            status.message += (
                "; it was not restarted: slurmctld no longer holds the job to requeue, and this manager did not "
                "submit the work, so it cannot submit it again"
            )
            return status

        # The delay runs from when this manager first saw the end, so clock differences between
        # this host and slurmctld do not matter.
        now = time.monotonic()
        delay = restart_delay(self.settings.restart_backoff_seconds, restarts, record, self._max_restart_delay)
        due = self._restart_due.setdefault(record.task_id, now + delay)
        if now < due or not act:
            return backoff_status(record, restarts, limit, policy, delay)
        try:
            await self._restart(replica, restarts, can_requeue)
        except ClusterManagerError as error:
            logger.warning(
                "Restart of Slurm task %s on cluster %s failed, will retry: %s", record.task_id, self.name, error
            )
            status = backoff_status(record, restarts, limit, policy, delay)
            status.message += f"; the last restart attempt failed: {error}"
            return status
        self._restart_due.pop(record.task_id, None)
        now = time.monotonic()
        # Entries past their time are of restarts that Slurm showed long ago (or of superseded tasks).
        expired = [
            task_id
            for task_id, attempt in self._restarted.items()
            if now - attempt.restarted_at >= STALE_RESTART_SECONDS
        ]
        for task_id in expired:
            del self._restarted[task_id]
        self._restarted[record.task_id] = _EndedAttempt(restarts, record.start_time, record.end_time, now)
        self._observation = None
        return _restarting_status(record, restarts)

    async def _restart(self, replica: _Replica, restarts: int, can_requeue: bool) -> None:
        identity, record = replica.identity, replica.record
        index = identity.replica_of_task(record.array_task_id)
        if can_requeue:
            # NOTE: each task is requeued with its own two scontrol calls, so many replicas of an
            # Always Job that end together take one statuses() call of that many round trips.
            await self.client.requeue(record.task_id)
            logger.info(
                "Requeued Slurm task %s (replica %s of work %s) on cluster %s after %s with exit code %s, as "
                "restart %d",
                record.task_id, index, identity.key, self.name, record.state, record.exit_status, restarts + 1,
            )  # fmt: skip
            return
        # slurmrestd cannot requeue, and slurmctld may have purged the job, so the replica is
        # submitted again as a new array of one task whose name carries the restart count.
        unit = self._units[identity.key]
        settings = parse_job_settings(unit.job.spec.backend.get(MANAGER_NAME))
        work_dir = await self._work_dir(identity.key)
        assert index is not None
        job_ids, _ = await self._submit_arrays(unit, [index], restarts + 1, settings, work_dir)
        logger.info(
            "Resubmitted replica %d of work %s on cluster %s as Slurm job %s (restart %d) after %s",
            index, identity.key, self.name, job_ids[0], restarts + 1, record.state,
        )  # fmt: skip

    async def _close_when_ended(
        self, key: str, indices: set[int], transport: Transport, process: asyncio.subprocess.Process
    ) -> None:
        """Close a followed tail once every selected replica has ended for good."""
        while True:
            await asyncio.sleep(FOLLOW_CHECK_SECONDS)
            try:
                live = [record for record in await self.client.list_jobs() if _key_of(record, self.name) == key]
            except ClusterManagerError as error:
                logger.debug("Cannot check work %s while following its output: %s", key, error)
                continue
            if all(self._replica_ended(live, index) for index in indices):
                await asyncio.sleep(FOLLOW_DRAIN_SECONDS)
                await transport.close_stream(process)
                return

    def _replica_ended(self, live: list[JobRecord], index: int) -> bool:
        latest: _Replica | None = None
        for record in live:
            identity = parse_job_name(record.name, self.name)
            if identity is None or identity.replica_of_task(record.array_task_id) != index:
                continue
            candidate = _Replica(identity, record)
            if latest is None or candidate.ordering > latest.ordering:
                latest = candidate
        if latest is None:
            return True  # Slurm no longer lists it: it ended long ago or was never submitted.
        record, identity = latest.record, latest.identity
        restarts = identity.attempt + record.restart_count
        return record.is_terminal and not wants_restart(
            record, identity.restart_policy, restarts, self.settings.max_restarts
        )

    # ---- submission -----------------------------------------------------------------------

    async def _submit_arrays(
        self, unit: WorkUnit, indices: list[int], attempt: int, settings: JobSettings, work_dir: str
    ) -> tuple[list[str], list[str]]:
        """Submit `indices` as few arrays as Slurm's limits allow; return job ids and warnings.

        If a later array fails, the earlier ones are cancelled and left out of every status, so
        that the skylet submits the whole share again."""
        policy = RestartPolicy(unit.job.spec.restart_policy)
        try:
            chunks = plan_arrays(self.name, unit.key, policy, attempt, indices)
        except ValueError as error:
            raise SubmitRejected(str(error)) from error
        job_ids: list[str] = []
        warnings: list[str] = []
        for chunk in chunks:
            request, request_warnings = self._request(unit, list(chunk), attempt, settings, work_dir)
            try:
                job_ids.append(await self.client.submit(request))
            except ClusterManagerError:
                if job_ids:
                    # NOTE: a restarted manager would see these cancelled arrays again; only a
                    # share split into several arrays (over 1000 replicas) can leave them.
                    self._abandoned.update(job_ids)
                    with contextlib.suppress(ClusterManagerError):
                        await self.client.cancel(job_ids)
                raise
            warnings += [warning for warning in request_warnings if warning not in warnings]
        return job_ids, warnings

    def _request(
        self, unit: WorkUnit, indices: list[int], attempt: int, settings: JobSettings, work_dir: str
    ) -> tuple[SubmitRequest, list[str]]:
        resources = unit.job.spec.resources
        policy = RestartPolicy(unit.job.spec.restart_policy)
        script, warnings = batch_script(unit, indices, work_dir, self.settings.container_runtime)
        rest = self.settings.interface == "rest"
        request = SubmitRequest(
            name=job_name(self.name, unit.key, policy, attempt, indices),
            comment=f"SkyShift Job {unit.job.metadata.namespace or 'default'}/{unit.job.metadata.name}",
            array=array_spec(len(indices)),
            script=script,
            # Slurm counts whole CPUs; a request of 0.5 CPU takes one.
            cpus_per_task=max(1, math.ceil(resources.cpus)),
            memory_mb=math.ceil(resources.memory) if resources.memory else None,
            gres=gpu_gres(resources.gpus, resources.accelerators, self._gpu_types),
            tmp_disk_mb=math.ceil(resources.disk) if resources.disk else None,
            partition=settings.partition or self.settings.partition,
            account=settings.account or self.settings.account,
            qos=settings.qos or self.settings.qos,
            time_limit=settings.time_limit or self.settings.time_limit,
            # slurmrestd cannot create the work directory before the job starts, so there Slurm
            # starts in /tmp, its own messages are dropped, and the script creates the directory.
            work_dir="/tmp" if rest else work_dir,
            slurm_output="/dev/null" if rest else f"{work_dir}/slurm-%A_%a.out",
            requeue=policy is not RestartPolicy.NEVER,
            environment={"PATH": DEFAULT_PATH, "LANG": "C.UTF-8"} if rest else {},
        )
        return request, [*warnings, *self.client.unsupported_fields(request)]

    def _reject(self, unit: WorkUnit, message: str) -> WorkStatus:
        """Remember the rejection of a share, so that `submit` and `statuses` report it until it is deleted."""
        job = f"{unit.job.metadata.namespace or 'default'}/{unit.job.metadata.name}"
        logger.info("Slurm cluster %s rejected work %s of Job %s: %s", self.name, unit.key, job, message)
        status = WorkStatus.rejected(unit, message)
        self._rejected[unit.key] = status
        return status

    def _forget(self, key: str) -> None:
        """Drop everything this instance remembers about `key`."""
        self._units.pop(key, None)
        self._rejected.pop(key, None)
        for task_id, record in list(self._finished.items()):
            if _key_of(record, self.name) == key:
                del self._finished[task_id]
                self._requeues.pop(task_id, None)
                self._restart_due.pop(task_id, None)
                self._restarted.pop(task_id, None)

    # ---- paths ----------------------------------------------------------------------------

    async def _work_dir(self, key: str) -> str:
        """Return the directory of a share's output files and of its replicas' variables files."""
        return f"{await self._resolved_output_root()}/{key}"

    async def _resolved_output_root(self) -> str:
        if self._output_root is None:
            home = await self.client.home_directory()
            if not home:
                raise ClusterManagerError(
                    f"cannot resolve output_dir {self.settings.output_root(self.name)!r}: $HOME is empty "
                    f"{self.client.description}; set output_dir to an absolute path"
                )
            self._output_root = home + self.settings.output_root(self.name)[1:]
        return self._output_root

    def _log_transport(self) -> Transport:
        if isinstance(self.client, CommandClient):
            return self.client.transport
        root = self._output_root or ""
        if not os.path.isdir(root):
            raise ClusterManagerError(
                f"cannot read the output of Slurm cluster {self.name!r}: slurmrestd serves no job output, and "
                f"output_dir {root!r} is not readable on this host. Read the files on the cluster, mount "
                "output_dir here, or attach the cluster with interface cli or ssh",
                retryable=False,
            )
        return LocalTransport(None)


def build_client(config: SlurmConfig) -> SlurmClient:
    """Return the client for a config's access mode."""
    timeout = config.command_timeout_seconds
    if config.interface == "cli":
        return CommandClient(LocalTransport(config.slurm_conf), timeout)
    if config.interface == "ssh":
        assert config.host is not None
        transport = SshTransport(
            config.host,
            port=config.port,
            user=config.user,
            identity_file=config.identity_file,
            known_hosts=config.known_hosts,
            slurm_conf=config.slurm_conf,
            connect_timeout=min(10.0, timeout),
        )
        return CommandClient(transport, timeout)
    assert config.url is not None
    return RestClient(
        config.url,
        config.api_version,
        token_file=config.token_file,
        token_env=config.token_env,
        user_name=config.user_name,
        timeout=timeout,
    )


def _job_number(job_id: str) -> int:
    return int(job_id) if job_id.isdigit() else 0


def _key_of(record: JobRecord, cluster: str) -> str | None:
    identity = parse_job_name(record.name, cluster)
    return identity.key if identity else None


def _check_key(key: str) -> None:
    # The key is one dot-separated field of the job name (see naming.py).
    if not key or "." in key or any(character.isspace() for character in key):
        raise ClusterManagerError(
            f"invalid work key {key!r}: expected a Job uid and generation without dots or spaces", retryable=False
        )


def _restarting_status(record: JobRecord, restarts: int) -> TaskStatus:
    """Return the status of a replica whose restart after attempt `restarts` was submitted."""
    return TaskStatus(
        state="Pending",
        reason="Restarting",
        exit_code=task_status(record, restarts).exit_code,
        message=f"Slurm job {record.task_id} ended ({record.state}); restart {restarts + 1} submitted",
        restarts=restarts + 1,
    )
