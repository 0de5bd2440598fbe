"""Where Slurm's commands run: local subprocesses (`interface: cli`) or ssh to a login node (`ssh`).

`client.CommandClient` sends every command through a Transport. Commands run as asyncio
subprocesses, so they never block the event loop, and each has a timeout after which its process
is killed. When the config names a slurm.conf, both transports pass it to every command as SLURM_CONF.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import shutil
import tempfile
import time
from dataclasses import dataclass

from skyshift_core.cluster_manager import ClusterManagerError

logger = logging.getLogger(__name__)

# Variables a local command inherits from the skylet. Everything else, such as credentials and the
# control plane's settings, stays out of the environment that sbatch copies into batch jobs.
PASSED_VARIABLES = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SHELL", "SLURM_CONF")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# ssh exits with this status when the connection itself fails (ssh(1), EXIT STATUS).
SSH_CONNECTION_FAILED = 255
# Seconds between attempts to start a new ssh master connection after one ended.
MASTER_RETRY_SECONDS = 10.0


@dataclass(frozen=True)
class CommandResult:
    """Exit status and output of one finished command; stdout stays bytes for offset bookkeeping."""

    command: str
    returncode: int
    stdout: bytes
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout.decode(errors="replace")

    def error_text(self) -> str:
        """Return stderr, or stdout when stderr is empty, trimmed for messages."""
        text = self.stderr.strip() or self.output.strip()
        return text[-2000:]


class Transport:
    """Runs argument lists where Slurm's commands are; subclasses decide where that is."""

    description = "transport"

    async def start(self) -> None:
        """Prepare connections; failures surface later, in the commands that need them."""

    async def stop(self) -> None:
        """Release connections and end every process this transport started."""

    async def run(
        self,
        argv: list[str],
        *,
        timeout: float,
        stdin: bytes | None = None,
        environment: dict[str, str] | None = None,
    ) -> CommandResult:
        """Run `argv` to completion and return its result; raise ClusterManagerError on timeout."""
        process_argv, process_environment = self.wrap(argv, environment)
        command = shlex.join(argv)
        try:
            process = await asyncio.create_subprocess_exec(
                *process_argv,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=process_environment,
            )
        except FileNotFoundError as error:
            raise self._missing_program(command, process_argv, error) from error
        # asyncio.timeout, not wait_for: on Python 3.11, wait_for drops a cancellation that arrives
        # as the command ends, and the caller would then go on as if it had not been cancelled.
        try:
            async with asyncio.timeout(timeout):
                stdout, stderr = await process.communicate(stdin)
        except TimeoutError as error:
            await _kill(process)
            raise ClusterManagerError(f"{command!r} {self.description} timed out after {timeout:g} s") from error
        except asyncio.CancelledError:
            await _kill(process)
            raise
        result = CommandResult(command, process.returncode or 0, stdout, stderr.decode(errors="replace"))
        self.check_connection(result)
        return result

    async def open_stream(
        self, argv: list[str], environment: dict[str, str] | None = None
    ) -> asyncio.subprocess.Process:
        """Start a long-running command (tail -F) whose stdout the caller reads and which it must
        `close_stream`. The command gets a session and process group of its own, and its standard
        input stays open until `close_stream`, so it can end itself and its children then."""
        process_argv, process_environment = self.wrap(argv, environment)
        return await asyncio.create_subprocess_exec(
            *process_argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env=process_environment,
            start_new_session=True,
        )

    async def close_stream(self, process: asyncio.subprocess.Process) -> None:
        """End a process from `open_stream` and reap it."""
        if process.stdin is not None:
            with contextlib.suppress(Exception):
                process.stdin.close()
        await _kill(process, graceful=True)

    async def run_attached(self, argv: list[str], *, tty: bool) -> int:
        """Run `argv` on this process's standard input, output and error; return its exit status.

        With `tty`, the remote side gets a terminal where the transport makes one (ssh -tt)."""
        process_argv, process_environment = self.wrap(argv, None)
        process_argv = self.attached_argv(process_argv, tty)
        try:
            process = await asyncio.create_subprocess_exec(*process_argv, env=process_environment)
        except FileNotFoundError as error:
            raise self._missing_program(shlex.join(argv), process_argv, error) from error
        try:
            return await process.wait()
        except asyncio.CancelledError:
            await _kill(process, graceful=True)
            raise

    def attached_argv(self, process_argv: list[str], tty: bool) -> list[str]:
        """Return the local argv of `run_attached`, from the one that `wrap` built."""
        return process_argv

    def _missing_program(self, command: str, process_argv: list[str], error: FileNotFoundError) -> ClusterManagerError:
        return ClusterManagerError(
            f"cannot run {command!r} {self.description}: {error.filename or process_argv[0]} not found; "
            "install Slurm's client commands (Debian package slurm-client) or fix PATH",
            retryable=False,
        )

    def wrap(self, argv: list[str], environment: dict[str, str] | None) -> tuple[list[str], dict[str, str]]:
        """Return the local argv and environment that run `argv` with `environment` added."""
        raise NotImplementedError

    def check_connection(self, result: CommandResult) -> None:
        """Raise ClusterManagerError when the result shows that the cluster was not reached."""


class LocalTransport(Transport):
    """Runs Slurm's commands on this machine, as on a login node."""

    def __init__(self, slurm_conf: str | None):
        self.slurm_conf = slurm_conf
        self.description = "on this machine"

    def wrap(self, argv: list[str], environment: dict[str, str] | None) -> tuple[list[str], dict[str, str]]:
        process_environment = {name: os.environ[name] for name in PASSED_VARIABLES if name in os.environ}
        process_environment.setdefault("PATH", DEFAULT_PATH)
        if self.slurm_conf:
            # Slurm's commands retry a missing slurm.conf for up to a minute before they fail.
            if not os.path.isfile(self.slurm_conf):
                raise ClusterManagerError(
                    f"slurm_conf {self.slurm_conf!r} is not a file on this machine, where the controller manager "
                    "runs Slurm's commands; fix spec.config.slurm_conf or create the file"
                )
            process_environment["SLURM_CONF"] = self.slurm_conf
        process_environment.update(environment or {})
        return list(argv), process_environment


class SshTransport(Transport):
    """Runs Slurm's commands on a login node over ssh, checking its host key against known_hosts.

    Host keys are always checked strictly (StrictHostKeyChecking=yes): an unknown or changed key
    fails the connection, and the error names the known_hosts file to fix. One master connection,
    a child of this process, carries the commands (OpenSSH connection sharing), so a command
    costs no new handshake. While the master is down, commands connect on their own.
    """

    def __init__(
        self,
        host: str,
        *,
        port: int = 22,
        user: str | None = None,
        identity_file: str | None = None,
        known_hosts: str | None = None,
        slurm_conf: str | None = None,
        connect_timeout: float = 10.0,
    ):
        self.host = host
        self.port = port
        self.user = user
        self.identity_file = os.path.expanduser(identity_file) if identity_file else None
        self.known_hosts = os.path.expanduser(known_hosts) if known_hosts else None
        self.slurm_conf = slurm_conf
        self.connect_timeout = connect_timeout
        destination = f"{user}@{host}" if user else host
        self.description = f"on {destination} port {port} over ssh"
        self._control_dir: str | None = None
        self._master: asyncio.subprocess.Process | None = None
        self._master_started = 0.0

    async def start(self) -> None:
        # A short directory, because a unix socket path has room for about 100 bytes.
        self._control_dir = tempfile.mkdtemp(prefix="skyshift-ssh-")
        await self._start_master()

    async def stop(self) -> None:
        if self._master is not None:
            await _kill(self._master, graceful=True)
            self._master = None
        if self._control_dir is not None:
            shutil.rmtree(self._control_dir, ignore_errors=True)
            self._control_dir = None

    async def run(self, argv, *, timeout, stdin=None, environment=None) -> CommandResult:
        await self._ensure_master()
        return await super().run(argv, timeout=timeout, stdin=stdin, environment=environment)

    def ssh_options(self, master: bool = False) -> list[str]:
        """Return ssh's options: strict host key checking, no prompts, and connection sharing."""
        options = [
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"ConnectTimeout={max(1, int(self.connect_timeout))}",
            "-o", "ServerAliveInterval=15",
            "-o", "ServerAliveCountMax=3",
            "-o", "LogLevel=ERROR",
            "-p", str(self.port),
        ]  # fmt: skip
        if self.known_hosts:
            options += ["-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null"]
        if self.identity_file:
            options += ["-i", self.identity_file, "-o", "IdentitiesOnly=yes"]
        if self.user:
            options += ["-l", self.user]
        if self._control_dir is not None:
            options += ["-o", f"ControlPath={self._control_dir}/%C"]
            options += ["-o", "ControlMaster=yes", "-o", "ControlPersist=no"] if master else ["-o", "ControlMaster=no"]
        return options

    def wrap(self, argv: list[str], environment: dict[str, str] | None) -> tuple[list[str], dict[str, str]]:
        variables = dict(environment or {})
        if self.slurm_conf:
            variables["SLURM_CONF"] = self.slurm_conf
        remote = shlex.join(argv)
        if variables:
            remote = shlex.join(["env", *(f"{name}={value}" for name, value in variables.items()), *argv])
        local_environment = {
            name: os.environ[name] for name in ("PATH", "HOME", "USER", "SSH_AUTH_SOCK") if name in os.environ
        }
        local_environment.setdefault("PATH", DEFAULT_PATH)
        return ["ssh", *self.ssh_options(), "--", self.host, remote], local_environment

    async def run_attached(self, argv: list[str], *, tty: bool) -> int:
        await self._ensure_master()
        return await super().run_attached(argv, tty=tty)

    def attached_argv(self, process_argv: list[str], tty: bool) -> list[str]:
        # -tt makes a terminal on the login node even when this side has none; -T makes none.
        return [process_argv[0], "-tt" if tty else "-T", *process_argv[1:]]

    def check_connection(self, result: CommandResult) -> None:
        if result.returncode != SSH_CONNECTION_FAILED:
            return
        hint = ""
        if "Host key verification failed" in result.stderr or "REMOTE HOST IDENTIFICATION HAS CHANGED" in result.stderr:
            where = self.known_hosts or "~/.ssh/known_hosts"
            hint = f"; add the login node's host key to {where} (for example with ssh-keyscan, after checking its fingerprint)"
        raise ClusterManagerError(f"ssh connection {self.description} failed: {result.error_text()}{hint}")

    async def _start_master(self) -> None:
        self._master_started = time.monotonic()
        try:
            self._master = await asyncio.create_subprocess_exec(
                "ssh",
                *self.ssh_options(master=True),
                "-N",
                "--",
                self.host,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
        except FileNotFoundError as error:
            raise ClusterManagerError(
                "ssh not found on PATH; install OpenSSH's client (Debian package openssh-client)", retryable=False
            ) from error
        logger.debug("Started ssh master connection %s (pid %d)", self.description, self._master.pid)

    async def _ensure_master(self) -> None:
        if self._control_dir is None:
            return
        if self._master is not None and self._master.returncode is None:
            return
        if time.monotonic() - self._master_started < MASTER_RETRY_SECONDS:
            return
        if self._master is not None:
            logger.info(
                "ssh master connection %s ended with status %s; starting a new one",
                self.description,
                self._master.returncode,
            )
        await self._start_master()


async def _kill(process: asyncio.subprocess.Process, graceful: bool = False) -> None:
    """End a child process by its handle and reap it; SIGTERM first when `graceful`."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        if graceful:
            process.terminate()
        else:
            process.kill()
    try:
        async with asyncio.timeout(5.0):
            await process.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
