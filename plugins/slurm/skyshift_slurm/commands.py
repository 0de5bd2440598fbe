"""Slurm's command-line tools as argument lists, and parsers of what they print.

`client.CommandClient` runs these through a transport (a local subprocess or ssh). Nothing here
runs a process, so every builder and parser is tested on its own with recorded output.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime

from skyshift_slurm.records import JobRecord, NodeRecord, RecordSource, SubmitRequest, decode_wait_status

logger = logging.getLogger(__name__)

# squeue prints times in this strftime format when SLURM_TIME_FORMAT is set, so "%s" gives seconds
# since the epoch and no time zone is involved.
TIME_FORMAT_ENVIRONMENT = {"SLURM_TIME_FORMAT": "%s"}
FIELD_SEPARATOR = "|"

# Name comes last: it is the only field a user chooses, so a '|' in another user's job name only
# lengthens the last field.
SQUEUE_FIELDS = (
    "JobID",
    "ArrayJobID",
    "ArrayTaskID",
    "State",
    "Reason",
    "exit_code",
    "RestartCnt",
    "StartTime",
    "EndTime",
    "NodeList",
    "Name",
)
SINFO_FIELDS = (
    "NodeList",
    "StateComplete",
    "CPUsState",
    "Memory",
    "AllocMem",
    "Disk",
    "Gres",
    "GresUsed",
    "Partition",
)
_UNSET = ("", "N/A", "(null)", "None", "Unknown")
# Suffixes of sinfo's compact node states (sinfo(1), "NODE STATE CODES") and the flag each means.
_STATE_MARKERS = {
    "*": "not_responding",
    "~": "powered_down",
    "#": "powering_up",
    "%": "powering_down",
    "!": "power_down",
    "$": "maint",
    "@": "reboot_requested",
    "^": "reboot_issued",
    "-": "planned",
}
_JOBCOMP_FIELD = re.compile(r"(?:^|\s)([A-Za-z]+)=")


def squeue_command() -> list[str]:
    """List every job of the calling user that the controller still lists, array tasks expanded.

    `--states=all` includes ended jobs until slurmctld purges them (MinJobAge, 300 s by default).
    """
    return [
        "squeue",
        "--me",
        "--states=all",
        "--array",
        "--noheader",
        "--Format=" + ",".join(f"{name}:{FIELD_SEPARATOR}" for name in SQUEUE_FIELDS),
    ]


def parse_squeue(output: str) -> list[JobRecord]:
    """Parse the output of `squeue_command`; lines of other shapes are skipped."""
    records = []
    for line in output.splitlines():
        if not line.strip():
            continue
        values = line.split(FIELD_SEPARATOR)
        count = len(SQUEUE_FIELDS)
        if len(values) < count:
            logger.debug("Skipped a squeue line with %d fields, expected %d: %r", len(values), count, line)
            continue
        # A trailing separator follows the last field; a '|' inside the name adds more fields.
        named = dict(zip(SQUEUE_FIELDS[:-1], values[: count - 1]))
        name = FIELD_SEPARATOR.join(values[count - 1 :])
        name = name.removesuffix(FIELD_SEPARATOR)
        exit_status, signal = decode_wait_status(_integer(named["exit_code"]))
        records.append(
            JobRecord(
                job_id=named["JobID"],
                array_job_id=named["ArrayJobID"] or named["JobID"],
                array_task_id=_integer(named["ArrayTaskID"]),
                name=name,
                state=named["State"].split()[0] if named["State"] else "",
                reason=_text(named["Reason"]),
                exit_status=exit_status,
                signal=signal,
                restart_count=_integer(named["RestartCnt"]) or 0,
                start_time=_epoch(named["StartTime"]),
                end_time=_epoch(named["EndTime"]),
                node_list=_text(named["NodeList"]),
            )
        )
    return records


def sinfo_command(partition: str | None) -> list[str]:
    """List every node, once per partition it belongs to (only `partition` when given)."""
    command = [
        "sinfo",
        "--Node",
        "--noheader",
        "--Format=" + ",".join(f"{name}:{FIELD_SEPARATOR}" for name in SINFO_FIELDS),
    ]
    if partition:
        command.append(f"--partition={partition}")
    return command


def parse_sinfo(output: str, partition: str | None) -> list[NodeRecord]:
    """Parse `sinfo_command` output into one record per node.

    Without a configured partition, only nodes of the default partition (marked `*` by sinfo)
    count, because that is where sbatch sends a job without --partition. When no partition is
    marked default, every node counts.
    """
    rows = []
    for line in output.splitlines():
        values = line.split(FIELD_SEPARATOR)
        if len(values) < len(SINFO_FIELDS):
            continue
        rows.append(dict(zip(SINFO_FIELDS, values)))
    if partition is None and any(row["Partition"].endswith("*") for row in rows):
        rows = [row for row in rows if row["Partition"].endswith("*")]

    nodes: dict[str, NodeRecord] = {}
    partitions: dict[str, list[str]] = {}
    for row in rows:
        name = row["NodeList"].strip()
        partitions.setdefault(name, []).append(row["Partition"].rstrip("*"))
        if name in nodes:
            continue
        state, flags = split_node_state(row["StateComplete"])
        allocated, _idle, other, total = (int(part) for part in row["CPUsState"].split("/"))
        nodes[name] = NodeRecord(
            name=name,
            state=state,
            flags=flags,
            cpus=total,
            cpus_allocated=allocated,
            cpus_other=other,
            memory_mb=_integer(row["Memory"]) or 0,
            memory_allocated_mb=_integer(row["AllocMem"]) or 0,
            tmp_disk_mb=_integer(row["Disk"]) or 0,
            gres=_text(row["Gres"]),
            gres_used=_text(row["GresUsed"]),
        )
    return [
        NodeRecord(**{**node.__dict__, "partitions": tuple(partitions[name])}) for name, node in sorted(nodes.items())
    ]


def split_node_state(text: str) -> tuple[str, frozenset[str]]:
    """Split sinfo's `idle+drain` (or slurmrestd's `IDLE`, flags apart) into ('idle', {'drain'}).

    A trailing `*` (not responding), `~` (powered down), `#` (powering up), `%` (powering down),
    `!` (pending power down) or `$` (maintenance) from the compact forms becomes a flag too.
    """
    text = text.strip().lower()
    markers = _STATE_MARKERS
    flags = set()
    while text and text[-1] in markers:
        flags.add(markers[text[-1]])
        text = text[:-1]
    state, *rest = text.split("+")
    flags.update(part for part in rest if part)
    return state, frozenset(flags)


def sbatch_command(request: SubmitRequest) -> list[str]:
    """Submit one job array; the batch script goes to sbatch's standard input.

    `--parsable` makes sbatch print only `<job id>` or `<job id>;<cluster>`.
    """
    command = [
        "sbatch",
        "--parsable",
        f"--job-name={request.name}",
        f"--comment={request.comment}",
        f"--array={request.array}",
        "--nodes=1",
        "--ntasks=1",
        f"--cpus-per-task={request.cpus_per_task}",
        f"--chdir={request.work_dir}",
        f"--output={request.slurm_output}",
        "--open-mode=append",
        "--requeue" if request.requeue else "--no-requeue",
    ]
    if request.memory_mb is not None:
        command.append(f"--mem={request.memory_mb}M")
    if request.gres:
        command.append(f"--gres={request.gres}")
    if request.tmp_disk_mb is not None:
        command.append(f"--tmp={request.tmp_disk_mb}M")
    for option, value in (
        ("--partition", request.partition),
        ("--account", request.account),
        ("--qos", request.qos),
        ("--time", request.time_limit),
    ):
        if value:
            command.append(f"{option}={value}")
    return command


def parse_sbatch(output: str) -> str:
    """Return the job id that `sbatch --parsable` printed; raise ValueError for anything else."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if not lines:
        raise ValueError("sbatch printed no job id")
    job_id = lines[-1].split(";")[0]
    if not job_id.isdigit():
        raise ValueError(f"sbatch printed {lines[-1]!r}, expected a job id")
    return job_id


def scancel_command(job_ids: list[str]) -> list[str]:
    return ["scancel", *job_ids]


def srun_command(job_id: str, command: list[str], *, pty: bool = False) -> list[str]:
    """Run `command` as one more step of running job `job_id` (Slurm's own id of an array task),
    on its node and within its allocation, as `srun --jobid=ID --overlap` typed by hand does.

    `--overlap` lets the step share the CPUs that the job's batch step holds, so it starts at once.
    srun exits with the command's exit code."""
    options = ["--quiet", f"--jobid={job_id}", "--overlap", "--nodes=1", "--ntasks=1", *(["--pty"] if pty else [])]
    return ["srun", *options, "--", *command]


# srun's own report of a step that exited nonzero, which repeats the exit code srun exits with.
SRUN_EXIT_LINE = re.compile(r"^srun: error: \S+: task \d+: Exited with exit code \d+\n?", re.MULTILINE)


def requeue_command(task_id: str) -> list[str]:
    """Put an ended array task back into the queue; Slurm adds one to its RestartCnt."""
    return ["scontrol", "requeue", task_id]


def release_command(task_id: str) -> list[str]:
    """Let a requeued task start now: slurmctld otherwise delays it by about two minutes.

    Measured on Slurm 22.05.8: after `scontrol requeue`, EligibleTime is 121 s later.
    """
    return ["scontrol", "update", f"JobId={task_id}", "StartTime=now"]


def ping_command() -> list[str]:
    return ["scontrol", "ping"]


def parse_ping(output: str) -> tuple[bool, str]:
    """Return (whether a controller is UP, the controllers' lines joined) from `scontrol ping`."""
    lines = [line.strip() for line in output.splitlines() if line.strip().startswith("Slurmctld")]
    up = any(line.endswith("is UP") for line in lines)
    return up, "; ".join(lines) or output.strip()


def show_config_command() -> list[str]:
    return ["scontrol", "show", "config"]


def parse_show_config(output: str) -> dict[str, str]:
    """Parse the `Name = value` lines of `scontrol show config`."""
    settings = {}
    for line in output.splitlines():
        name, separator, value = line.partition("=")
        if separator and name.strip() and " " not in name.strip():
            settings[name.strip()] = value.strip()
    return settings


def parse_jobcomp(text: str, name_filter: str = "") -> list[JobRecord]:
    """Parse jobcomp/filetxt lines (`JobId=12 ... JobState=FAILED ... ExitCode=3:0`).

    Lines whose text lacks `name_filter` are skipped before parsing, which keeps reading a large
    file cheap. A requeued job leaves a line with JobState=PENDING for each requeue.
    """
    records = []
    for line in text.splitlines():
        if name_filter and name_filter not in line:
            continue
        values = _split_jobcomp_line(line)
        if "JobId" not in values or "JobState" not in values:
            continue
        code_text, _, signal_text = values.get("ExitCode", "").partition(":")
        array_task = _integer(values.get("ArrayTaskId", ""))
        records.append(
            JobRecord(
                job_id=values["JobId"],
                array_job_id=values.get("ArrayJobId") or values["JobId"],
                array_task_id=array_task,
                name=values.get("Name", ""),
                state=values["JobState"].split()[0],
                exit_status=_integer(code_text),
                signal=_integer(signal_text) or None,
                start_time=_timestamp(values.get("StartTime", "")),
                end_time=_timestamp(values.get("EndTime", "")),
                node_list=_text(values.get("NodeList", "")),
                source=RecordSource.JOBCOMP,
            )
        )
    return records


def _split_jobcomp_line(line: str) -> dict[str, str]:
    # Values may contain spaces (WorkDir), so a field ends where the next `Name=` begins.
    matches = list(_JOBCOMP_FIELD.finditer(line))
    values = {}
    for current, following in zip(matches, [*matches[1:], None]):
        end = following.start() if following is not None else len(line)
        values[current.group(1)] = line[current.end() : end].strip()
    return values


def _integer(text: str) -> int | None:
    text = text.strip()
    if text.isdigit():
        return int(text)
    return None


def _text(text: str) -> str:
    text = text.strip()
    return "" if text in _UNSET else text


def _epoch(text: str) -> float | None:
    value = _integer(text)
    return float(value) if value else None


def _timestamp(text: str) -> float | None:
    """Parse a jobcomp time, written in the controller's local time; only differences are used."""
    text = text.strip()
    if text in _UNSET:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None
