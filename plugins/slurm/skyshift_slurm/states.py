"""Slurm job states as SkyShift task states, and the restart rules of the three restart policies.

The manager calls `task_status` for the latest record of each replica and `wants_restart` /
`restart_delay` for replicas whose Slurm job has ended.
"""

from __future__ import annotations

from skyshift_core.objects import RestartPolicy, TaskStatus
from skyshift_slurm.records import JobRecord

# Slurm states in which the job holds its allocation; all report as Running.
RUNNING_STATES = frozenset({"RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "RESIZING", "SIGNALING", "STAGE_OUT"})
# Reasons of ended jobs, in the CamelCase of TaskStatus reasons.
END_REASONS = {
    "COMPLETED": "Completed",
    "FAILED": "Failed",
    "CANCELLED": "Cancelled",
    "TIMEOUT": "Timeout",
    "NODE_FAIL": "NodeFail",
    "PREEMPTED": "Preempted",
    "OUT_OF_MEMORY": "OutOfMemory",
    "BOOT_FAIL": "BootFail",
    "DEADLINE": "Deadline",
}
_END_DESCRIPTIONS = {
    "CANCELLED": "was cancelled outside SkyShift",
    "TIMEOUT": "reached its time limit",
    "NODE_FAIL": "ended because its node failed",
    "PREEMPTED": "was preempted",
    "OUT_OF_MEMORY": "ran out of memory",
    "BOOT_FAIL": "ended because its node failed to boot",
    "DEADLINE": "missed its deadline",
}
# What common pending reasons (squeue(1), "JOB REASON CODES") mean for the user.
PENDING_DESCRIPTIONS = {
    "None": "waiting for the Slurm scheduler",
    "Resources": "waiting for resources: no node has the requested CPUs, memory or GRES free now",
    "Priority": "waiting behind jobs of higher priority",
    "BeginTime": "waiting for its begin time",
    "Dependency": "waiting for a job it depends on",
    "JobHeldUser": "held by its user; release it with scontrol release",
    "JobHeldAdmin": "held by an administrator",
    "ReqNodeNotAvail": "a node it needs is down, drained or reserved",
    "PartitionDown": "its partition is down",
    "PartitionInactive": "its partition is inactive",
    "PartitionTimeLimit": "its time limit exceeds the partition's; lower time_limit",
    "PartitionNodeLimit": "its request exceeds the partition's node limits",
    "Reservation": "waiting for a reservation",
}

# Restart delays double from restart_backoff_seconds up to this cap, as the kubelet's container
# restart delays do (kubernetes.io, "Pod Lifecycle": 10 s, 20 s, 40 s, ... capped at five minutes).
MAX_RESTART_DELAY_SECONDS = 300.0
# An attempt that ran this long resets the delay to its first value, as the kubelet does.
BACKOFF_RESET_SECONDS = 600.0


def exit_code(record: JobRecord) -> int | None:
    """Return the replica's exit code; a kill by signal N counts as 128 + N, as shells report it."""
    if record.state == "COMPLETED":
        return 0
    if record.signal:
        return 128 + record.signal
    return record.exit_status


def task_status(record: JobRecord, restarts: int) -> TaskStatus:
    """Map one Slurm record to the state of its replica."""
    state = record.state
    where = f" on {record.node_list}" if record.node_list else ""
    subject = f"Slurm job {record.task_id}"

    if state == "PENDING" or state.startswith("REQUEUE") or state in ("CONFIGURING", "RESV_DEL_HOLD"):
        reason = record.reason or "None"
        if state == "CONFIGURING":
            reason = "Configuring"
        detail = PENDING_DESCRIPTIONS.get(reason, f"pending with reason {reason}")
        if state == "CONFIGURING":
            detail = "its nodes are being prepared"
        return TaskStatus(
            state="Pending",
            reason="" if reason == "None" else reason,
            message=f"{subject} is {state}: {detail}",
            restarts=restarts,
        )
    if state in RUNNING_STATES:
        reason = "" if state == "RUNNING" else state.title().replace("_", "")
        return TaskStatus(state="Running", reason=reason, message=f"{subject} is {state}{where}", restarts=restarts)
    if state == "COMPLETED":
        return TaskStatus(
            state="Succeeded",
            exit_code=0,
            reason="Completed",
            message=f"{subject} COMPLETED with exit code 0{where}",
            restarts=restarts,
        )
    if state in END_REASONS:
        return TaskStatus(
            state="Failed",
            exit_code=exit_code(record),
            reason=END_REASONS[state],
            message=f"{subject} {_describe_end(record)}{where}",
            restarts=restarts,
        )
    # A state this mapping does not know, from a newer Slurm: report it rather than guess an outcome.
    return TaskStatus(
        state="Pending", reason=state.title(), message=f"{subject} is in Slurm state {state}", restarts=restarts
    )


def wants_restart(record: JobRecord, policy: RestartPolicy, restarts: int, max_restarts: int) -> bool:
    """Return whether an ended replica runs again.

    Never: no. Always: yes, whatever the outcome. OnFailure: after a failure, while fewer than
    max_restarts restarts happened. A job cancelled outside SkyShift (scancel by a user or an
    administrator) is never restarted: cancelling was a decision, not a failure.
    """
    if not record.is_terminal or record.state == "CANCELLED":
        return False
    if policy is RestartPolicy.ALWAYS:
        return True
    if policy is RestartPolicy.NEVER or record.state == "COMPLETED":
        return False
    return restarts < max_restarts


def restart_delay(
    base_seconds: float, restarts: int, record: JobRecord, max_delay: float = MAX_RESTART_DELAY_SECONDS
) -> float:
    """Seconds to wait before restart number `restarts + 1`: base * 2**restarts, capped at max_delay.

    For example with a base of 10 s the delays are 10, 20, 40, 80, 160, then 300 s.
    """
    ran = None
    if record.start_time is not None and record.end_time is not None:
        ran = record.end_time - record.start_time
    if ran is not None and ran >= BACKOFF_RESET_SECONDS:
        return min(base_seconds, max_delay)
    return min(base_seconds * 2 ** min(restarts, 32), max_delay)


def backoff_status(
    record: JobRecord, restarts: int, max_restarts: int, policy: RestartPolicy, delay_seconds: float
) -> TaskStatus:
    """Status of a replica that ended and waits `delay_seconds` in all to restart: Running with
    reason BackOff.

    A Kubernetes pod in CrashLoopBackOff reports the same way, and so the Job stays Running
    between attempts. The message gives the whole delay, not the time left, so that it stays the
    same from one poll to the next and the Job is not written again each time.
    """
    ended = task_status(record, restarts)
    of_limit = f" of {max_restarts}" if policy is RestartPolicy.ON_FAILURE else ""
    return TaskStatus(
        state="Running",
        exit_code=exit_code(record),
        reason="BackOff",
        message=f"{ended.message}; restart {restarts + 1}{of_limit} after {max(0.0, delay_seconds):.0f}s",
        restarts=restarts,
    )


def final_status(record: JobRecord, restarts: int, max_restarts: int, policy: RestartPolicy) -> TaskStatus:
    """Status of a replica that ended for good; says when OnFailure ran out of restarts."""
    status = task_status(record, restarts)
    if policy is RestartPolicy.ON_FAILURE and status.state == "Failed" and record.state != "CANCELLED":
        status.message += f" after {restarts} restarts (max_restarts is {max_restarts})"
    return status


def _describe_end(record: JobRecord) -> str:
    if record.state in _END_DESCRIPTIONS:
        return f"{_END_DESCRIPTIONS[record.state]} ({record.state})"
    if record.signal:
        return f"{record.state}: killed by signal {record.signal}"
    if record.exit_status is not None:
        return f"{record.state} with exit code {record.exit_status}"
    return record.state
