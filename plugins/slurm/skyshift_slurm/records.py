"""What the Slurm cluster manager reads from Slurm, independent of how it was read.

`commands` (squeue, sinfo and the jobcomp file), `rest_v0038` (slurmrestd) and the manager all
exchange these records, so the state mapping and the restart logic see one shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

# Slurm job states that never change again, as squeue, slurmrestd and the jobcomp file spell them.
TERMINAL_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "TIMEOUT",
    }
)


class RecordSource(str, Enum):
    """Where a job record came from: the controller's job table, or the jobcomp file of ended jobs."""

    QUEUE = "queue"
    JOBCOMP = "jobcomp"


@dataclass(frozen=True)
class JobRecord:
    """One Slurm array task (or plain job) at one moment.

    `job_id` is Slurm's own id of the task, which equals `array_job_id` for pending tasks and for
    the array's last task. `exit_status` and `signal` are decoded from the wait status, so an
    exit code of 3 is `exit_status=3` and a kill by SIGTERM is `signal=15`. Times are seconds since
    the epoch, None when Slurm has not set them.
    """

    job_id: str
    array_job_id: str
    array_task_id: int | None
    name: str
    state: str
    reason: str = ""
    exit_status: int | None = None
    signal: int | None = None
    restart_count: int = 0
    start_time: float | None = None
    end_time: float | None = None
    node_list: str = ""
    source: RecordSource = RecordSource.QUEUE

    @property
    def task_id(self) -> str:
        """Slurm's name of the array task, such as `123_4`, accepted by scancel and scontrol."""
        if self.array_task_id is None:
            return self.job_id
        return f"{self.array_job_id}_{self.array_task_id}"

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES


@dataclass(frozen=True)
class NodeRecord:
    """One Slurm node as sinfo or slurmrestd reports it; memory and disk in MiB.

    `state` is the base state in lower case (idle, mixed, allocated, down, ...) and `flags` the
    lower-case flags that follow it (drain, maint, reserved, not_responding, ...).
    """

    name: str
    state: str
    flags: frozenset[str] = field(default_factory=frozenset)
    cpus: int = 0
    cpus_allocated: int = 0
    # CPUs that are neither idle nor allocated, such as the CPUs of a drained node.
    cpus_other: int = 0
    memory_mb: int = 0
    memory_allocated_mb: int = 0
    tmp_disk_mb: int = 0
    gres: str = ""
    gres_used: str = ""
    partitions: tuple[str, ...] = ()


def decode_wait_status(status: int | None) -> tuple[int | None, int | None]:
    """Split a raw wait status (squeue's exit_code, slurmrestd's exit_code) into (exit status, signal).

    For example 768 is exit status 3 and 9 is a kill by SIGKILL.
    """
    if status is None:
        return None, None
    signal = status & 0x7F
    if signal:
        return None, signal
    return (status >> 8) & 0xFF, None


@dataclass(frozen=True)
class SubmitRequest:
    """One job array to submit, in the terms sbatch and slurmrestd share.

    Memory and disk are MiB. `environment` is the batch job's whole environment in REST mode,
    where slurmrestd requires it; sbatch passes the environment of the process that runs it.
    """

    name: str
    comment: str
    array: str
    script: str
    cpus_per_task: int = 1
    memory_mb: int | None = None
    gres: str | None = None
    tmp_disk_mb: int | None = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_limit: str | None = None
    # Working directory of the batch script when it starts, and the file for Slurm's own messages
    # (such as the notice of a time limit); the script sends the replica's output elsewhere.
    work_dir: str = "/tmp"
    slurm_output: str = "/dev/null"
    requeue: bool = False
    environment: dict[str, str] = field(default_factory=dict)
