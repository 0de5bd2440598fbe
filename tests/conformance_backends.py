"""Cluster managers for testing ClusterManagerConformance itself.

LocalProcessManager is a small, complete backend: it runs each replica as a local `sh -c` process.
All clusters' work sits in one registry of this process, as a real backend keeps it in its own
service, so managers of two clusters share it. Each other class breaks one rule of the
ClusterManager contract, so that the suite's checks can be seen to fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from skyshift_core.cluster_manager import (
    ClusterHealth,
    ClusterManager,
    ClusterManagerError,
    ConfigError,
    WorkStatus,
    WorkUnit,
)
from skyshift_core.objects import NodeResources, ResourceList, RestartPolicy, TaskStatus

# Restarts of an OnFailure replica before it counts as Failed.
MAX_RESTARTS = 3
# Seconds before a replica runs again, and between two reads of a followed replica's output.
RESTART_DELAY_SECONDS = 0.1
FOLLOW_POLL_SECONDS = 0.05
ENDED = ("Succeeded", "Failed")


@dataclass
class Replica:
    index: int
    state: str = "Pending"
    exit_code: int | None = None
    restarts: int = 0
    # Output lines without their line endings, stdout and stderr together.
    output: list[str] = field(default_factory=list)
    process: asyncio.subprocess.Process | None = None


@dataclass
class Work:
    cluster: str
    key: str
    replicas: dict[int, Replica]
    runners: list[asyncio.Task] = field(default_factory=list)


# Every cluster's work, keyed by (cluster name, work key).
REGISTRY: dict[tuple[str, str], Work] = {}


async def run_replica(replica: Replica, unit: WorkUnit) -> None:
    """Run one replica's command, again after each exit that its restart policy restarts."""
    policy = unit.job.spec.restart_policy
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **unit.environment(replica.index)}
    while True:
        # A session of its own, so that stop_work can kill the children of `sh` too: a child that
        # outlived `sh` would keep the output pipe open, and Process.wait() would wait for it.
        process = await asyncio.create_subprocess_exec(
            "sh", "-c", unit.job.spec.run, env=environment, start_new_session=True,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        replica.process = process
        replica.state = "Running"
        assert process.stdout is not None
        async for raw in process.stdout:
            replica.output.append(raw.decode(errors="replace").rstrip("\r\n"))
        replica.exit_code = await process.wait()
        restart = policy is RestartPolicy.ALWAYS or (
            policy is RestartPolicy.ON_FAILURE and replica.exit_code != 0 and replica.restarts < MAX_RESTARTS
        )
        if not restart:
            replica.state = "Succeeded" if replica.exit_code == 0 else "Failed"
            return
        replica.restarts += 1
        await asyncio.sleep(RESTART_DELAY_SECONDS)


async def stop_work(work: Work) -> None:
    """Stop the runners of `work`, and kill and reap the process group of each replica."""
    for runner in work.runners:
        runner.cancel()
    await asyncio.gather(*work.runners, return_exceptions=True)
    for replica in work.replicas.values():
        process = replica.process
        if process is None or process.returncode is not None:
            continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


async def reset_backend() -> None:
    """Stop and forget the work of every cluster, such as the work a broken `delete` left behind."""
    works = list(REGISTRY.values())
    REGISTRY.clear()
    for work in works:
        await stop_work(work)


class LocalProcessManager(ClusterManager):
    """Runs replicas as local processes; config: `cpus`, the capacity of its one node (default 4)."""

    supports_logs = True

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(config) - {"cpus"})
        if unknown:
            raise ConfigError(f"unknown field {unknown[0]!r}; valid fields: cpus")
        cpus = config.get("cpus", 4)
        if isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or cpus <= 0:
            raise ConfigError(f"invalid cpus {cpus!r}: expected a positive number such as 4")
        return {"cpus": cpus}

    async def health(self) -> ClusterHealth:
        return ClusterHealth(ready=True)

    async def nodes(self) -> dict[str, NodeResources]:
        capacity = ResourceList(cpus=self.config["cpus"], memory=4096)
        return {"local": NodeResources(capacity=capacity, allocatable=capacity)}

    async def submit(self, unit: WorkUnit) -> WorkStatus:
        work = REGISTRY.get((self.name, unit.key))
        if work is None:
            work = Work(self.name, unit.key, {index: Replica(index) for index in unit.replica_indices})
            REGISTRY[(self.name, unit.key)] = work
            work.runners = [asyncio.create_task(run_replica(replica, unit)) for replica in work.replicas.values()]
        return self.work_status(work)

    async def delete(self, key: str) -> None:
        work = REGISTRY.pop((self.name, key), None)
        if work is not None:
            await stop_work(work)

    async def statuses(self) -> dict[str, WorkStatus]:
        return {key: self.work_status(work) for (cluster, key), work in REGISTRY.items() if cluster == self.name}

    def work_status(self, work: Work) -> WorkStatus:
        tasks = {
            str(index): TaskStatus(state=replica.state, exit_code=replica.exit_code, restarts=replica.restarts)
            for index, replica in work.replicas.items()
        }
        return WorkStatus(key=work.key, tasks=tasks)

    async def logs(
        self, key: str, replica: int | None = None, *, follow: bool = False, tail: int | None = None
    ) -> AsyncIterator[tuple[int, str]]:
        work = REGISTRY.get((self.name, key))
        if work is None:
            raise ClusterManagerError(f"no work with key {key!r} on local cluster {self.name!r}", retryable=False)
        if replica is not None and replica not in work.replicas:
            raise ClusterManagerError(
                f"replica {replica} is not part of work {key!r}, which has replicas {sorted(work.replicas)}",
                retryable=False,
            )
        selected = [work.replicas[replica]] if replica is not None else list(work.replicas.values())
        positions = {item.index: 0 if tail is None else max(0, len(item.output) - tail) for item in selected}
        while True:
            # Read before the lines, so that lines written before the end are still sent.
            ended = all(item.state in ENDED for item in selected) or REGISTRY.get((self.name, key)) is not work
            for item in selected:
                lines = item.output[positions[item.index] :]
                positions[item.index] += len(lines)
                for line in lines:
                    yield item.index, line
            if not follow or ended:
                return
            await asyncio.sleep(FOLLOW_POLL_SECONDS)


class ForgetfulDeleteManager(LocalProcessManager):
    """Breaks `delete`: it returns without removing the work."""

    async def delete(self, key: str) -> None:
        return None


class UntailedLogsManager(LocalProcessManager):
    """Breaks `logs`: it yields every line and ignores `tail`."""

    async def logs(self, key: str, replica: int | None = None, *, follow: bool = False, tail: int | None = None):
        async for item in super().logs(key, replica, follow=follow):
            yield item


class IgnoredCancelManager(LocalProcessManager):
    """Breaks `cancel`: it returns and the replicas keep running."""

    async def cancel(self, key: str) -> None:
        return None


class UnscopedStatusesManager(LocalProcessManager):
    """Breaks `statuses`: it lists the work of every cluster on the backend, not only its own."""

    async def statuses(self) -> dict[str, WorkStatus]:
        return {key: self.work_status(work) for (_, key), work in REGISTRY.items()}


class FreeTextStateManager(LocalProcessManager):
    """Breaks TaskStatus.state: it reports a succeeded replica as Completed."""

    def work_status(self, work: Work) -> WorkStatus:
        status = super().work_status(work)
        for task in status.tasks.values():
            if task.state == "Succeeded":
                task.state = "Completed"
        return status


class NewlineLogsManager(LocalProcessManager):
    """Breaks `logs`: it keeps each line's line ending."""

    async def logs(self, key, replica=None, *, follow=False, tail=None):
        async for index, line in super().logs(key, replica, follow=follow, tail=tail):
            yield index, line + "\n"


class UnfilteredLogsManager(LocalProcessManager):
    """Breaks `logs`: it ignores `replica` and yields every replica's lines."""

    async def logs(self, key, replica=None, *, follow=False, tail=None):
        async for item in super().logs(key, None, follow=follow, tail=tail):
            yield item


class SilentMissingLogsManager(LocalProcessManager):
    """Breaks `logs`: it yields nothing for a key that no work has, instead of raising."""

    async def logs(self, key, replica=None, *, follow=False, tail=None):
        if (self.name, key) not in REGISTRY:
            return
        async for item in super().logs(key, replica, follow=follow, tail=tail):
            yield item


class TinyNodeManager(LocalProcessManager):
    """Breaks the suite's capacity need: its one node has half a CPU."""

    async def nodes(self) -> dict[str, NodeResources]:
        capacity = ResourceList(cpus=0.5, memory=4096)
        return {"local": NodeResources(capacity=capacity, allocatable=capacity)}
