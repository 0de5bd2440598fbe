"""The operations the manager needs from Slurm, behind one interface with two implementations:
`CommandClient` (Slurm's commands, locally or over ssh) and `rest.RestClient` (slurmrestd).

The manager calls only these methods, so it does not know which access mode a cluster uses.
"""

from __future__ import annotations

import logging

from skyshift_core.cluster_manager import ClusterManagerError
from skyshift_slurm import commands
from skyshift_slurm.records import JobRecord, NodeRecord, SubmitRequest
from skyshift_slurm.transport import CommandResult, Transport

logger = logging.getLogger(__name__)

# Fragments of Slurm's error messages (as libslurmfull.so of Slurm 22.05.8 spells them) that no
# retry can fix, because the request itself does not suit this cluster.
PERMANENT_SUBMIT_ERRORS = (
    "Invalid partition",
    "Invalid account",
    "Invalid qos",
    "Requested node configuration is not available",
    "Requested time limit is invalid",
    "Invalid generic resource",
    "Invalid Trackable RESource",
    "Invalid memory specification",
    "More processors requested than permitted",
    "Job violates accounting/QOS policy",
    "Invalid job array specification",
    "Access/permission denied",
    "User's group not permitted to use this partition",
)


class SubmitRejected(ClusterManagerError):
    """Slurm rejected a submission for a reason that a retry cannot fix."""

    def __init__(self, message: str):
        super().__init__(message, retryable=False)


class SlurmClient:
    """One cluster's Slurm controller, however it is reached."""

    # Whether ended array tasks can be put back into the queue (`scontrol requeue`).
    supports_requeue = False
    description = "Slurm"

    async def start(self) -> None:
        """Open connections; a cluster that cannot be reached yet is not an error here."""

    async def stop(self) -> None:
        """Close connections and end the processes this client started."""

    async def ping(self) -> tuple[bool, str, str]:
        """Return (controller is up, reason, message); an unreachable controller is a result, not an error."""
        raise NotImplementedError

    async def list_nodes(self, partition: str | None) -> list[NodeRecord]:
        raise NotImplementedError

    async def list_jobs(self) -> list[JobRecord]:
        """Return every job of this client's user that the controller lists, ended ones included."""
        raise NotImplementedError

    async def read_jobcomp(self, name_filter: str) -> list[JobRecord]:
        """Return the ended-job records written since the last call (all of them on the first call).

        Empty when the cluster keeps no jobcomp file that this client can read.
        """
        return []

    async def submit(self, request: SubmitRequest) -> str:
        """Submit one job array and return its job id; raise SubmitRejected for a permanent refusal."""
        raise NotImplementedError

    async def cancel(self, job_ids: list[str]) -> None:
        """Cancel jobs or array tasks; ids that are already gone are not an error."""
        raise NotImplementedError

    async def requeue(self, task_id: str) -> None:
        """Put an ended array task back into the queue so that it starts again now."""
        raise ClusterManagerError(f"{self.description} cannot requeue jobs", retryable=False)

    async def settings(self) -> dict[str, str]:
        """Return slurmctld settings (`scontrol show config`), or {} when unavailable."""
        return {}

    async def prepare_directory(self, path: str) -> None:
        """Create a directory where batch jobs run, when this client can; REST clients cannot."""

    async def home_directory(self) -> str | None:
        """Return the home directory of the user whose jobs these are, when it can be learned."""
        return None

    def unsupported_fields(self, request: SubmitRequest) -> list[str]:
        """Return warnings for parts of `request` this client cannot pass on to Slurm."""
        return []


class CommandClient(SlurmClient):
    """Slurm through squeue, sinfo, sbatch, scancel and scontrol, run by a transport."""

    supports_requeue = True

    def __init__(self, transport: Transport, timeout: float):
        self.transport = transport
        self.timeout = timeout
        self.description = f"Slurm {transport.description}"
        self._jobcomp_path: str | None = None
        self._jobcomp_offset = 0
        self._jobcomp_checked = False

    async def start(self) -> None:
        await self.transport.start()

    async def stop(self) -> None:
        await self.transport.stop()

    async def ping(self) -> tuple[bool, str, str]:
        try:
            result = await self.transport.run(commands.ping_command(), timeout=self.timeout)
        except ClusterManagerError as error:
            return False, "Unreachable", str(error)
        up, message = commands.parse_ping(result.output)
        if up:
            return True, "SlurmctldUp", message
        return False, "SlurmctldDown", message or f"scontrol ping failed: {result.error_text()}"

    async def list_nodes(self, partition: str | None) -> list[NodeRecord]:
        result = await self._checked(commands.sinfo_command(partition))
        return commands.parse_sinfo(result.output, partition)

    async def list_jobs(self) -> list[JobRecord]:
        result = await self._checked(commands.squeue_command(), environment=commands.TIME_FORMAT_ENVIRONMENT)
        return commands.parse_squeue(result.output)

    async def read_jobcomp(self, name_filter: str) -> list[JobRecord]:
        path = await self._jobcomp_file()
        if path is None:
            return []
        # One command prints the file's size, then the bytes after the offset, so a file that
        # was rotated (now shorter than the offset) is noticed and read from its start.
        # A missing file (no job has ended yet) reads as empty.
        script = 'size=$(stat -c %s "$1" 2>/dev/null) || { echo 0; exit 0; }; echo "$size"; tail -c +"$2" "$1"'
        result = await self.transport.run(
            ["sh", "-c", script, "sh", path, str(self._jobcomp_offset + 1)], timeout=self.timeout
        )
        if result.returncode != 0:
            logger.warning(
                "Cannot read the jobcomp file %s %s: %s", path, self.transport.description, result.error_text()
            )
            return []
        size_line, _, data = result.stdout.partition(b"\n")
        size = int(size_line.strip() or 0)
        if size < self._jobcomp_offset:
            logger.info("jobcomp file %s shrank to %d bytes; reading it again from the start", path, size)
            self._jobcomp_offset = 0
            return await self.read_jobcomp(name_filter)
        # Only whole lines count; a line being written now is read on the next call.
        complete = data[: data.rfind(b"\n") + 1]
        self._jobcomp_offset += len(complete)
        return commands.parse_jobcomp(complete.decode(errors="replace"), name_filter)

    async def submit(self, request: SubmitRequest) -> str:
        result = await self.transport.run(
            commands.sbatch_command(request), timeout=self.timeout, stdin=request.script.encode()
        )
        if result.returncode != 0:
            message = f"sbatch {self.transport.description} failed: {result.error_text()}"
            if any(fragment in result.error_text() for fragment in PERMANENT_SUBMIT_ERRORS):
                raise SubmitRejected(message)
            raise ClusterManagerError(message)
        try:
            return commands.parse_sbatch(result.output)
        except ValueError as error:
            raise ClusterManagerError(f"sbatch {self.transport.description}: {error}") from error

    async def cancel(self, job_ids: list[str]) -> None:
        if not job_ids:
            return
        result = await self.transport.run(commands.scancel_command(job_ids), timeout=self.timeout)
        # scancel reports ids that ended meanwhile as errors; that is the wanted outcome.
        if (
            result.returncode != 0
            and "Invalid job id" not in result.error_text()
            and "already completing" not in result.error_text()
        ):
            raise ClusterManagerError(
                f"scancel {' '.join(job_ids)} {self.transport.description} failed: {result.error_text()}"
            )

    async def requeue(self, task_id: str) -> None:
        await self._checked(commands.requeue_command(task_id))
        await self._checked(commands.release_command(task_id))

    async def settings(self) -> dict[str, str]:
        result = await self._checked(commands.show_config_command())
        return commands.parse_show_config(result.output)

    async def prepare_directory(self, path: str) -> None:
        await self._checked(["mkdir", "-p", "--", path])

    async def home_directory(self) -> str | None:
        result = await self._checked(["sh", "-c", 'printf %s "$HOME"'])
        return result.output.strip() or None

    async def _jobcomp_file(self) -> str | None:
        if not self._jobcomp_checked:
            settings = await self.settings()
            self._jobcomp_checked = True
            if settings.get("JobCompType") == "jobcomp/filetxt" and settings.get("JobCompLoc", "").startswith("/"):
                self._jobcomp_path = settings["JobCompLoc"]
            else:
                logger.info(
                    "Cluster keeps no jobcomp/filetxt file (JobCompType=%s); ended jobs are known only until slurmctld purges them",
                    settings.get("JobCompType"),
                )
        return self._jobcomp_path

    async def _checked(self, argv: list[str], environment: dict[str, str] | None = None) -> CommandResult:
        result = await self.transport.run(argv, timeout=self.timeout, environment=environment)
        if result.returncode != 0:
            raise ClusterManagerError(f"{result.command} {self.transport.description} failed: {result.error_text()}")
        return result
