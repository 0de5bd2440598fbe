"""Requests to and responses from slurmrestd's `openapi/v0.0.38` plugin (Slurm 22.05).

Everything that depends on the API version lives here: paths, the submission body and the
mapping of responses to records. `rest.API_VERSIONS` maps a version name to its module, so a
newer version is one more module with the same functions.
"""

from __future__ import annotations

from typing import Any

from skyshift_slurm.commands import split_node_state
from skyshift_slurm.config import time_limit_minutes
from skyshift_slurm.naming import expand_array_tasks
from skyshift_slurm.records import JobRecord, NodeRecord, SubmitRequest, decode_wait_status

VERSION = "v0.0.38"
PREFIX = f"/slurm/{VERSION}"
# slurmctld's error number for a job id it does not hold (slurm_errno.h, ESLURM_INVALID_JOB_ID).
INVALID_JOB_ID = 2017


def ping_path() -> str:
    return f"{PREFIX}/ping"


def parse_ping(body: dict[str, Any]) -> tuple[bool, str]:
    """Return (a controller is UP, one line per controller)."""
    pings = body.get("pings") or []
    lines = [
        f"slurmctld ({ping.get('mode', '?')}) at {ping.get('hostname', '?')} is {ping.get('ping', '?')}"
        for ping in pings
    ]
    return any(ping.get("ping") == "UP" for ping in pings), "; ".join(lines)


def nodes_path() -> str:
    return f"{PREFIX}/nodes"


def partitions_path() -> str:
    return f"{PREFIX}/partitions"


def default_partition(body: dict[str, Any]) -> str | None:
    """Return the name of the partition flagged default, or None."""
    for partition in body.get("partitions") or []:
        if "default" in [str(flag).lower() for flag in partition.get("flags") or []]:
            return partition.get("name")
    return None


def parse_nodes(body: dict[str, Any], partition: str | None) -> list[NodeRecord]:
    """Map the nodes response; only nodes of `partition` when it is given."""
    records = []
    for node in body.get("nodes") or []:
        partitions = tuple(node.get("partitions") or ())
        if partition is not None and partition not in partitions:
            continue
        state, flags = split_node_state(str(node.get("state", "")))
        flags = flags | {str(flag).lower() for flag in node.get("state_flags") or []}
        cpus = int(node.get("cpus") or 0)
        allocated = int(node.get("alloc_cpus") or 0)
        idle = node.get("idle_cpus")
        other = max(0, cpus - allocated - int(idle)) if idle is not None else 0
        records.append(
            NodeRecord(
                name=str(node.get("name", "")),
                state=state,
                flags=frozenset(flags),
                cpus=cpus,
                cpus_allocated=allocated,
                cpus_other=other,
                memory_mb=int(node.get("real_memory") or 0),
                memory_allocated_mb=int(node.get("alloc_memory") or 0),
                tmp_disk_mb=int(node.get("temporary_disk") or 0),
                gres=_text(node.get("gres")),
                gres_used=_text(node.get("gres_used")),
                partitions=partitions,
            )
        )
    return records


def jobs_path() -> str:
    return f"{PREFIX}/jobs"


def parse_jobs(body: dict[str, Any], name_prefix: str = "") -> list[JobRecord]:
    """Map the jobs response to one record per array task.

    slurmrestd lists an array's pending tasks as one entry with a task string such as `0-3`,
    which this expands as `squeue --array` does."""
    records = []
    for job in body.get("jobs") or []:
        name = str(job.get("name") or "")
        if name_prefix and not name.startswith(name_prefix):
            continue
        exit_status, signal = decode_wait_status(_integer(job.get("exit_code")))
        common = {
            "job_id": str(job.get("job_id")),
            "array_job_id": str(job.get("array_job_id") or job.get("job_id")),
            "name": name,
            "state": str(job.get("job_state") or ""),
            "reason": _text(job.get("state_reason")),
            "exit_status": exit_status,
            "signal": signal,
            "restart_count": _integer(job.get("restart_cnt")) or 0,
            "start_time": _epoch(job.get("start_time")),
            "end_time": _epoch(job.get("end_time")),
            "node_list": _text(job.get("nodes")),
        }
        task = job.get("array_task_id")
        task_string = str(job.get("array_task_string") or "")
        if task is None and task_string:
            records.extend(JobRecord(array_task_id=number, **common) for number in expand_array_tasks(task_string))
        else:
            records.append(JobRecord(array_task_id=_integer(task), **common))
    return records


def submit_path() -> str:
    return f"{PREFIX}/job/submit"


def submit_body(request: SubmitRequest) -> dict[str, Any]:
    """Build the submission body. `environment` is required by Slurm 22.05 and is the batch
    script's whole environment; v0.0.38 has no field for --tmp (see `unsupported_fields`)."""
    job: dict[str, Any] = {
        "name": request.name,
        "comment": request.comment,
        "array": request.array,
        "nodes": [1, 1],
        "tasks": 1,
        "cpus_per_task": request.cpus_per_task,
        "current_working_directory": request.work_dir,
        "standard_output": request.slurm_output,
        "open_mode": "append",
        "requeue": request.requeue,
        "environment": dict(request.environment),
    }
    if request.memory_mb is not None:
        job["memory_per_node"] = request.memory_mb
    if request.gres:
        job["gres"] = request.gres
    for field, value in (("partition", request.partition), ("account", request.account), ("qos", request.qos)):
        if value:
            job[field] = value
    if request.time_limit:
        minutes = time_limit_minutes(request.time_limit)
        if minutes is not None:
            job["time_limit"] = minutes
    return {"script": request.script, "job": job}


def unsupported_fields(request: SubmitRequest) -> list[str]:
    """Return warnings for parts of a request that v0.0.38 cannot carry."""
    warnings = []
    if request.tmp_disk_mb:
        warnings.append(
            f"the disk request ({request.tmp_disk_mb} MiB) was not passed to Slurm: slurmrestd's "
            f"{VERSION} API has no field for --tmp"
        )
    return warnings


def parse_submit(body: dict[str, Any]) -> str:
    job_id = body.get("job_id")
    if job_id is None:
        raise ValueError(f"slurmrestd returned no job_id: {errors(body) or body}")
    return str(job_id)


def job_path(job_id: str) -> str:
    return f"{PREFIX}/job/{job_id}"


def errors(body: dict[str, Any]) -> list[str]:
    """Return the `errors` entries of a response as readable strings."""
    messages = []
    for entry in body.get("errors") or []:
        text = entry.get("description") or entry.get("error") or str(entry)
        if entry.get("error") and entry.get("error") not in text:
            text = f"{text}: {entry['error']}"
        messages.append(text)
    return messages


def error_numbers(body: dict[str, Any]) -> set[int]:
    return {int(entry["error_number"]) for entry in body.get("errors") or [] if "error_number" in entry}


def _integer(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _epoch(value: Any) -> float | None:
    number = _integer(value)
    return float(number) if number else None


def _text(value: Any) -> str:
    text = "" if value is None else str(value).strip()
    return "" if text in ("N/A", "(null)", "None") else text
