"""Identity of SkyShift's Slurm jobs: everything the manager must know about a job is in its name.

A share of replicas becomes one Slurm job array whose name is

    skyshift.<cluster>.<work key>.<restart policy>.<attempt>.<replica ranges>

for example `skyshift.site-a.0c9f...-3.OnFailure.0.0-2,5`. Array task N runs the replica at
position N of the expanded ranges (0, 1, 2, 5 here). squeue, slurmrestd and the jobcomp file all
report the name, so a restarted manager recovers the work key, the replica of every task and the
restart policy from Slurm alone. The attempt is the number of restarts before the job was
submitted: 0 at first, more for a replica submitted again as a new job (slurmrestd cannot
requeue). A task that Slurm requeues keeps its job and counts restarts in RestartCnt, so a
replica's restarts are attempt + RestartCnt.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from skyshift_core.objects import RestartPolicy

NAME_PREFIX = "skyshift"
# slurmctld rejects job names longer than this (measured with sbatch -J on Slurm 22.05.8).
MAX_JOB_NAME_LENGTH = 1024
# Array task ids must stay below MaxArraySize, which defaults to 1001.
MAX_ARRAY_TASKS = 1000

_RANGES = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")
_POLICIES = {policy.value: policy for policy in RestartPolicy}


@dataclass(frozen=True)
class JobIdentity:
    """Identity parsed from a SkyShift job name: whose work it is and which replicas its tasks run."""

    cluster: str
    key: str
    restart_policy: RestartPolicy
    attempt: int
    replica_indices: tuple[int, ...]

    def replica_of_task(self, array_task_id: int | None) -> int | None:
        """Return the global replica index that array task `array_task_id` runs, or None."""
        position = 0 if array_task_id is None else array_task_id
        if 0 <= position < len(self.replica_indices):
            return self.replica_indices[position]
        return None


def job_name(cluster: str, key: str, restart_policy: RestartPolicy, attempt: int, indices: Sequence[int]) -> str:
    """Build the Slurm job name of one array; `indices` are the replicas of its tasks, in task order."""
    return ".".join(
        (NAME_PREFIX, cluster, key, RestartPolicy(restart_policy).value, str(attempt), format_ranges(indices))
    )


def name_prefix(cluster: str) -> str:
    """Return the prefix shared by every job name of one SkyShift cluster."""
    return f"{NAME_PREFIX}.{cluster}."


def parse_job_name(name: str, cluster: str) -> JobIdentity | None:
    """Return the identity in a job name of cluster `cluster`, or None for any other job."""
    if not name.startswith(name_prefix(cluster)):
        return None
    parts = name.split(".")
    if len(parts) != 6:
        return None
    _, name_cluster, key, policy, attempt, ranges = parts
    if name_cluster != cluster or not key or policy not in _POLICIES or not attempt.isdigit():
        return None
    try:
        indices = parse_ranges(ranges)
    except ValueError:
        return None
    return JobIdentity(name_cluster, key, _POLICIES[policy], int(attempt), indices)


def format_ranges(indices: Iterable[int]) -> str:
    """Render ascending indices compactly: [0, 1, 2, 5, 7, 8] becomes `0-2,5,7-8`."""
    ordered = list(indices)
    if not ordered:
        raise ValueError("cannot format an empty list of replica indices")
    if ordered != sorted(set(ordered)) or ordered[0] < 0:
        raise ValueError(f"replica indices {ordered} must be distinct, ascending and not negative")
    parts = []
    start = previous = ordered[0]
    for index in [*ordered[1:], None]:
        if index is not None and index == previous + 1:
            previous = index
            continue
        parts.append(str(start) if start == previous else f"{start}-{previous}")
        if index is not None:
            start = previous = index
    return ",".join(parts)


def parse_ranges(text: str) -> tuple[int, ...]:
    """Expand `0-2,5` to (0, 1, 2, 5); raise ValueError for anything else."""
    if not _RANGES.match(text):
        raise ValueError(f"invalid replica ranges {text!r}: expected a form such as '0-2,5'")
    indices: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        low, high = int(first), int(last or first)
        if high < low:
            raise ValueError(f"invalid range {part!r} in {text!r}: the end is below the start")
        indices.extend(range(low, high + 1))
    if indices != sorted(set(indices)):
        raise ValueError(f"invalid replica ranges {text!r}: indices must ascend without repeats")
    return tuple(indices)


def plan_arrays(
    cluster: str, key: str, restart_policy: RestartPolicy, attempt: int, indices: Sequence[int]
) -> list[tuple[int, ...]]:
    """Split a share's replicas into as few job arrays as fit Slurm's limits, usually exactly one.

    An array contains at most MAX_ARRAY_TASKS tasks. Its name lists its replicas as ranges and
    must fit MAX_JOB_NAME_LENGTH, which only a share with hundreds of gaps exceeds.
    """
    ordered = sorted(set(indices))
    chunks: list[tuple[int, ...]] = []
    current: list[int] = []
    for index in ordered:
        candidate = [*current, index]
        fits = len(candidate) <= MAX_ARRAY_TASKS and (
            len(job_name(cluster, key, restart_policy, attempt, candidate)) <= MAX_JOB_NAME_LENGTH
        )
        if fits:
            current = candidate
            continue
        if not current:
            raise ValueError(f"job name for replica {index} of work {key!r} exceeds {MAX_JOB_NAME_LENGTH} characters")
        chunks.append(tuple(current))
        current = [index]
    if current:
        chunks.append(tuple(current))
    return chunks


def array_spec(task_count: int) -> str:
    """Return the --array value for tasks 0 to task_count - 1."""
    return "0" if task_count == 1 else f"0-{task_count - 1}"


def expand_array_tasks(text: str) -> list[int]:
    """Expand an array task string as squeue and slurmrestd print it (`0-3,7`, `0-9:2`, `0-15%4`)."""
    text = text.split("%", 1)[0].strip().strip("[]")
    tasks: list[int] = []
    for part in filter(None, text.split(",")):
        bounds, _, step_text = part.partition(":")
        first, _, last = bounds.partition("-")
        step = int(step_text) if step_text else 1
        tasks.extend(range(int(first), int(last or first) + 1, step))
    return tasks
