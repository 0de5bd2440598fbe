"""Start and stop real single-node Slurm clusters on this machine, for tests, the demo and users.

`LocalSlurmCluster` writes a slurm.conf, starts slurmctld and slurmd (and, on request, slurmrestd)
bound to 127.0.0.1, and stops by PID exactly the processes it started. Every cluster shares one
munged, which this module starts and stops itself. The CLI (`skyshift-slurm-local up|down|status`,
or `python -m skyshift_slurm.localcluster`) keeps its state in a JSON file in the cluster
directory, so that `down` in another process stops what `up` started.

Needs root and the Debian packages that `scripts/install-slurm.sh` installs (Slurm 22.05).
Standard library only.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

RESTD_USER = "slurmrest"
"""System user that runs slurmrestd, because slurmrestd exits when started as root."""

DEFAULT_MUNGE_DIR = Path("/run/skyshift-munge")
"""Directory of the shared munged: its socket, output, seed, state file and client registrations."""

MUNGE_KEY = Path("/etc/munge/munge.key")
PARTITION = "debug"
OPENAPI_VERSION = "v0.0.38"
STATE_FILE_NAME = "localcluster.json"
STATE_FORMAT_VERSION = 1

DEFAULT_TIMEOUT = 30.0
"""Seconds that start, stop and restart steps wait for a daemon before they raise."""

_CLUSTER_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_SBIN_DIRS = ("/usr/sbin", "/sbin")
_POLL_INTERVAL = 0.05


class LocalClusterError(RuntimeError):
    """A local Slurm cluster could not be configured, started, reached or stopped."""


class SlurmNotInstalledError(LocalClusterError):
    """A Slurm or munge program is missing from this machine."""


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DaemonProcess:
    """A daemon started by this module, identified so that a reused PID is never signalled.

    `start_ticks` is field 22 of /proc/PID/stat (start time in clock ticks since boot) and
    `comm` the kernel's name for the process. Both are read right after the start and must
    still match before the process is signalled.
    """

    program: str
    pid: int
    start_ticks: int
    comm: str
    output_path: str

    def is_alive(self) -> bool:
        """Return True while this exact process exists and is neither a zombie nor dead."""
        identity = _read_process_identity(self.pid)
        if identity != (self.start_ticks, self.comm):
            return False
        return _read_process_state(self.pid) not in (None, "Z", "X")


def _read_process_identity(pid: int) -> tuple[int, str] | None:
    """Return (start ticks, comm) of a PID, or None if no such process exists."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The comm field in /proc/PID/stat may contain spaces and brackets, so split after the last ")".
    # The fields after it start at field 3 (state), which puts field 22 at index 19.
    fields_after_comm = stat[stat.rindex(")") + 2 :].split()
    return int(fields_after_comm[19]), comm


def _read_process_state(pid: int) -> str | None:
    """Return the one-letter state of a PID from /proc/PID/status (Z for a zombie), or None."""
    try:
        with open(f"/proc/{pid}/status") as status_file:
            for line in status_file:
                if line.startswith("State:"):
                    return line.split()[1]
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def _search_path() -> str:
    """Return PATH with the sbin directories appended, where Debian installs the Slurm and munge daemons."""
    return os.environ.get("PATH", "") + os.pathsep + os.pathsep.join(_SBIN_DIRS)


def _find_program(program: str) -> str:
    found = shutil.which(program, path=_search_path())
    if found is None:
        raise SlurmNotInstalledError(
            f"Program {program!r} not found on PATH or in {', '.join(_SBIN_DIRS)}; "
            "install Slurm and munge with scripts/install-slurm.sh (as root)"
        )
    return found


def _as_user(user: str, command: list[str]) -> list[str]:
    """Return `command` prefixed to run as `user`, with that user's group and no supplementary groups.

    setpriv changes the identity and then runs the command, so Python starts the child without
    switching users itself. With `user=` or `group=`, subprocess uses fork() instead of vfork().
    In a process whose gRPC threads are busy, such as one with an etcd client, gRPC's fork
    handlers then aborted 23 to 56 of 200 children in tests with grpcio 1.85.
    """
    setpriv = shutil.which("setpriv", path=_search_path())
    if setpriv is None:
        raise LocalClusterError(
            f"Program 'setpriv' not found on PATH; it is needed to run Slurm's helpers as user {user!r}. "
            "Install it with: apt-get install util-linux"
        )
    return [setpriv, f"--reuid={user}", f"--regid={user}", "--clear-groups", "--", *command]


def _wait_for_exec(popen: subprocess.Popen[bytes], launcher: str, timeout: float = 5.0) -> tuple[int, str] | None:
    """Wait until the child has replaced `launcher` with its program; return its identity, or None if it exited."""
    deadline = time.monotonic() + timeout
    while True:
        if popen.poll() is not None:
            return None
        identity = _read_process_identity(popen.pid)
        if identity is None or identity[1] != launcher:
            return identity
        if time.monotonic() > deadline:
            raise LocalClusterError(f"{launcher} (pid {popen.pid}) timed out: it did not run its program within {timeout:g} s")
        time.sleep(0.002)


def _spawn_daemon(
    program: str,
    arguments: list[str],
    output_path: Path,
    environment: dict[str, str] | None = None,
    user: str | None = None,
) -> tuple[DaemonProcess, subprocess.Popen[bytes]]:
    """Start a daemon in the foreground of its own session and return its identity and handle.

    The daemon gets its own session, so that it outlives the CLI process that starts it and
    ignores a Ctrl-C meant for a test run. Its stdout and stderr go to `output_path`, which
    catches what it prints before its own log file is open, such as a fatal configuration error.
    """
    command = [_find_program(program), *arguments]
    if user:
        command = _as_user(user, command)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with open(output_path, "ab") as output:
        popen = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,
            close_fds=True,
        )
    # The identity must be the daemon's, so with setpriv in front, wait until it has run the daemon.
    identity = _wait_for_exec(popen, "setpriv") if user else _read_process_identity(popen.pid)
    if identity is None:
        popen.wait()
        raise LocalClusterError(f"{program} exited at once with status {popen.returncode}; see {output_path}")
    process = DaemonProcess(program, popen.pid, identity[0], identity[1], str(output_path))
    logger.info("Started %s (pid %d)", program, popen.pid)
    return process, popen


def _wait_for_exit(process: DaemonProcess, timeout: float, popen: subprocess.Popen[bytes] | None) -> bool:
    """Wait until the process has exited and return False if it is still alive at the deadline.

    A child of this process is reaped through its Popen handle. Any other process counts as
    exited once it is a zombie, because PID 1 on some machines never reaps orphans.
    """
    deadline = time.monotonic() + timeout
    while True:
        if popen is not None:
            if popen.poll() is not None:
                return True
        elif not process.is_alive():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_INTERVAL)


def _stop_process(process: DaemonProcess, popen: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """Send SIGTERM, wait up to `timeout` seconds, then SIGKILL; skip a PID that is not ours."""
    if popen is None and not process.is_alive():
        return
    if popen is not None and popen.poll() is not None:
        return
    logger.info("Stopping %s (pid %d)", process.program, process.pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGTERM)
    if _wait_for_exit(process, timeout, popen):
        return
    logger.warning(
        "%s (pid %d) ignored SIGTERM for %.0f s, sending SIGKILL",
        process.program,
        process.pid,
        timeout,
    )
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGKILL)
    if not _wait_for_exit(process, timeout, popen):
        raise LocalClusterError(f"{process.program} (pid {process.pid}) is still alive {timeout:.0f} s after SIGKILL")


def _tail(path: str | Path, lines: int = 15) -> str:
    """Return the last lines of a log file for an error message, or a note that it is missing."""
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])


def _wait_until(
    condition: Callable[[], bool], timeout: float, description: str, log_path: str | Path | None = None
) -> None:
    """Poll `condition()` until it returns true; raise LocalClusterError at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            message = f"Timed out after {timeout:.0f} s waiting for {description}"
            if log_path is not None:
                message += f"; last lines of {log_path}:\n{_tail(log_path)}"
            raise LocalClusterError(message)
        time.sleep(_POLL_INTERVAL)


def _user_can_read(user: str, path: Path) -> bool:
    """Return True if `user` can open `path` for reading, which needs search rights on every parent."""
    result = subprocess.run(_as_user(user, ["test", "-r", str(path)]), check=False)
    return result.returncode == 0


# --------------------------------------------------------------------------------------------
# Machine facts
# --------------------------------------------------------------------------------------------


def short_hostname() -> str:
    """Return `hostname -s`, checked to resolve to 127.0.0.1 as slurm.conf here requires."""
    name = socket.gethostname().split(".")[0]
    try:
        address = socket.gethostbyname(name)
    except OSError as err:
        raise LocalClusterError(
            f"Host name {name!r} does not resolve ({err}); add '127.0.0.1 {name}' to /etc/hosts "
            "or run scripts/install-slurm.sh"
        ) from err
    if address != "127.0.0.1":
        raise LocalClusterError(
            f"Host name {name!r} resolves to {address}, expected 127.0.0.1 so that every Slurm "
            f"daemon stays on loopback; add '127.0.0.1 {name}' to /etc/hosts"
        )
    return name


def default_cpus() -> int:
    """Return the number of CPUs this process may run on, as `nproc` counts them."""
    return len(os.sched_getaffinity(0))


def total_memory_mb() -> int:
    """Return MemTotal from /proc/meminfo in MiB."""
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    raise LocalClusterError("No MemTotal line in /proc/meminfo")


def default_memory_mb() -> int:
    """Return a RealMemory in MiB below the machine's total, so that jobs Slurm admits fit in memory.

    It keeps 10% of MemTotal, and at least 512 MiB, for the operating system and the daemons.
    """
    total = total_memory_mb()
    return max(256, total - max(total // 10, 512))


def pick_free_ports(count: int) -> list[int]:
    """Return `count` distinct TCP ports that are free on 127.0.0.1 right now.

    NOTE: another program may take a port between this call and the daemon's bind. The daemon
    then fails to start and the error shows its log.
    """
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _require_root(action: str) -> None:
    if os.geteuid() != 0:
        raise LocalClusterError(
            f"Cannot {action} as uid {os.geteuid()}: local Slurm clusters run munged as user "
            "munge and slurmctld as root, so run this as root"
        )


# --------------------------------------------------------------------------------------------
# Shared munged
# --------------------------------------------------------------------------------------------


class SharedMunged:
    """The one munged that every local cluster using the same directory shares.

    Each cluster registers itself as a client before it starts its daemons. The first client
    starts munged, and munged stops when the last live client releases it. A client whose
    owner process and daemons have all exited counts as gone, so a crashed test does not keep
    munged alive past the next release. A file lock makes these steps safe across processes,
    so starting twice is harmless.
    """

    def __init__(self, directory: str | Path = DEFAULT_MUNGE_DIR) -> None:
        self.directory = Path(directory)

    @property
    def socket_path(self) -> Path:
        return self.directory / "munge.socket"

    @property
    def _state_path(self) -> Path:
        return self.directory / "munged.json"

    @property
    def _clients_dir(self) -> Path:
        return self.directory / "clients"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._prepare_directory()
        with open(self.directory / "lock", "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _prepare_directory(self) -> None:
        # munged runs as user munge and exits when group or others can write to its socket or
        # seed directory, so the directory belongs to munge with mode 0755.
        self.directory.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.directory, "munge", "munge")
        self.directory.chmod(0o755)
        self._clients_dir.mkdir(exist_ok=True)

    def _read_process(self) -> DaemonProcess | None:
        try:
            return DaemonProcess(**json.loads(self._state_path.read_text()))
        except FileNotFoundError:
            return None

    def is_running(self) -> bool:
        """Return True if the munged that this module started in this directory is alive."""
        process = self._read_process()
        return process is not None and process.is_alive()

    def acquire(self, client_key: str, timeout: float = DEFAULT_TIMEOUT) -> Path:
        """Register `client_key` and start munged unless it already runs; return the socket path."""
        _require_root("start munged")
        with self._locked():
            self._write_client(client_key, [])
            process = self._read_process()
            if process is not None and process.is_alive():
                logger.debug("Reusing munged (pid %d) for %s", process.pid, client_key)
                return self.socket_path
            self._start(timeout)
        return self.socket_path

    def update_client(self, client_key: str, daemons: list[DaemonProcess]) -> None:
        """Record the daemons of a client, which keep its registration live after its owner exits."""
        with self._locked():
            self._write_client(client_key, daemons)

    def release(self, client_key: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Remove the registration of `client_key` and stop munged if no live client remains."""
        with self._locked():
            (self._clients_dir / f"{client_key}.json").unlink(missing_ok=True)
            self._stop_if_unused(timeout)

    def stop_if_unused(self, timeout: float = DEFAULT_TIMEOUT) -> bool:
        """Drop stale registrations and stop munged if no live client remains; return True if stopped."""
        with self._locked():
            return self._stop_if_unused(timeout)

    def stop(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Stop munged now, even while clusters still use it, and delete every registration."""
        with self._locked():
            for client_file in self._clients_dir.glob("*.json"):
                client_file.unlink()
            self._stop(timeout)

    def _stop_if_unused(self, timeout: float) -> bool:
        live_clients = self._live_clients()
        if live_clients:
            logger.debug("Keeping munged for %s", ", ".join(live_clients))
            return False
        self._stop(timeout)
        return True

    def _write_client(self, client_key: str, daemons: list[DaemonProcess]) -> None:
        identity = _read_process_identity(os.getpid())
        assert identity is not None, "/proc has no entry for the current process"
        start_ticks, comm = identity
        owner = DaemonProcess("owner", os.getpid(), start_ticks, comm, "")
        record = {"owner": asdict(owner), "daemons": [asdict(daemon) for daemon in daemons]}
        path = self._clients_dir / f"{client_key}.json"
        path.write_text(json.dumps(record))

    def _live_clients(self) -> list[str]:
        live = []
        for client_file in self._clients_dir.glob("*.json"):
            record = json.loads(client_file.read_text())
            processes = [DaemonProcess(**record["owner"])]
            processes += [DaemonProcess(**daemon) for daemon in record["daemons"]]
            if any(process.is_alive() for process in processes):
                live.append(client_file.stem)
            else:
                logger.info("Dropping stale munged client %s: its processes have exited", client_file.stem)
                client_file.unlink()
        return live

    def _start(self, timeout: float) -> None:
        if not MUNGE_KEY.is_file():
            raise LocalClusterError(f"munge key {MUNGE_KEY} is missing; run scripts/install-slurm.sh to create it")
        munge_client = _find_program("munge")
        output_path = self.directory / "munged.out"
        process, _popen = _spawn_daemon(
            "munged",
            [
                "--foreground",
                f"--socket={self.socket_path}",
                f"--pid-file={self.directory / 'munged.pid'}",
                f"--seed-file={self.directory / 'munged.seed'}",
                f"--key-file={MUNGE_KEY}",
            ],
            output_path,
            user="munge",
        )
        self._state_path.write_text(json.dumps(asdict(process)))

        def munged_encodes() -> bool:
            if not process.is_alive():
                raise LocalClusterError(
                    f"munged exited during start; last lines of {output_path}:\n{_tail(output_path)}"
                )
            probe = subprocess.run(
                [munge_client, "--no-input", f"--socket={self.socket_path}"],
                capture_output=True,
                check=False,
            )
            return probe.returncode == 0

        _wait_until(munged_encodes, timeout, f"munged at {self.socket_path}", output_path)

    def _stop(self, timeout: float) -> None:
        process = self._read_process()
        if process is None:
            return
        # munged is usually not a child of this process, so no Popen handle exists.
        _stop_process(process, None, timeout)
        self._state_path.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


def render_slurm_conf(
    *,
    cluster_name: str,
    node_name: str,
    hostname: str,
    cpus: int,
    memory_mb: int,
    slurmctld_port: int,
    slurmd_port: int,
    base_dir: Path,
    munge_socket: Path,
    jwt_key: Path,
) -> str:
    """Return the slurm.conf text of a single-node cluster whose daemons bind to 127.0.0.1."""
    return f"""\
# Single-node Slurm cluster {cluster_name!r}, written by skyshift_slurm.localcluster.
# It is rewritten on every start, so edits do not last.
ClusterName={cluster_name}
SlurmctldHost={hostname}(127.0.0.1)
SlurmctldPort={slurmctld_port}
SlurmdPort={slurmd_port}
# Without these two flags slurmctld and slurmd listen on 0.0.0.0.
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SlurmUser=root
SlurmdUser=root

AuthType=auth/munge
AuthInfo=socket={munge_socket}
CredType=cred/munge
# JWT lets slurmrestd on TCP act for users who present a token from `scontrol token`.
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key={jwt_key}

StateSaveLocation={base_dir / "state"}
SlurmdSpoolDir={base_dir / "spool"}
SlurmctldPidFile={base_dir / "run" / "slurmctld.pid"}
SlurmdPidFile={base_dir / "run" / "slurmd.pid"}
SlurmctldLogFile={base_dir / "log" / "slurmctld.log"}
SlurmdLogFile={base_dir / "log" / "slurmd.log"}
JobCompType=jobcomp/filetxt
JobCompLoc={base_dir / "log" / "jobcomp.txt"}
MailProg=/bin/true

# No cgroups: processes are tracked through /proc and tasks are not bound to CPUs.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default, a job with no --mem takes all the node's memory and later jobs queue.
DefMemPerCPU=256
# The node takes its CPUs and RealMemory from this file, not from the hardware, so a test can
# declare a node larger or smaller than the machine.
SlurmdParameters=config_overrides
# A node that was DOWN becomes usable again as soon as its slurmd registers.
ReturnToService=2

NodeName={node_name} NodeHostname={hostname} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName={PARTITION} Nodes={node_name} Default=YES MaxTime=INFINITE State=UP
"""


# --------------------------------------------------------------------------------------------
# The cluster
# --------------------------------------------------------------------------------------------


class LocalSlurmCluster:
    """A single-node Slurm cluster whose daemons run on this machine and bind to 127.0.0.1.

    Everything lives in `base_dir`: slurm.conf, the JWT key, state, spool, logs, and the state
    file that lets another process stop the cluster. Clusters with distinct names and
    directories run side by side. Use it as a context manager, or call `start()` and `stop()`.
    """

    def __init__(
        self,
        name: str,
        base_dir: str | Path,
        cpus: int | None = None,
        memory_mb: int | None = None,
        munge_dir: str | Path = DEFAULT_MUNGE_DIR,
    ) -> None:
        if not _CLUSTER_NAME_PATTERN.match(name):
            raise ValueError(
                f"Invalid cluster name {name!r}: expected 1-32 lowercase letters, digits or '-', "
                "starting with a letter (Slurm lowercases ClusterName)"
            )
        if cpus is not None and cpus < 1:
            raise ValueError(f"Invalid cpus {cpus}: expected at least 1")
        if memory_mb is not None and memory_mb < 1:
            raise ValueError(f"Invalid memory_mb {memory_mb}: expected at least 1 MiB")
        self.name = name
        self.base_dir = Path(base_dir).resolve()
        self.cpus = cpus if cpus is not None else default_cpus()
        self.memory_mb = memory_mb if memory_mb is not None else default_memory_mb()
        self.node_name = f"{name}-node1"
        self.partition = PARTITION
        self.munged = SharedMunged(munge_dir)
        self.slurmctld_port: int | None = None
        self.slurmd_port: int | None = None
        self.restd_url: str | None = None
        self.restd_socket: Path | None = None
        self._processes: dict[str, DaemonProcess] = {}
        self._popens: dict[str, subprocess.Popen[bytes]] = {}
        # A stable key per directory, so that `down` in another process releases the same
        # munged registration that `up` made.
        digest = hashlib.sha256(str(self.base_dir).encode()).hexdigest()[:12]
        self._munge_client_key = f"{name}-{digest}"

    # Paths -------------------------------------------------------------------------------

    @property
    def slurm_conf(self) -> Path:
        """Path of this cluster's slurm.conf."""
        return self.base_dir / "slurm.conf"

    @property
    def jwt_key(self) -> Path:
        """Path of the HS256 key that slurmctld uses to sign and check JWTs."""
        return self.base_dir / "jwt.key"

    @property
    def state_file(self) -> Path:
        """Path of the JSON file with ports, PIDs and paths that `load()` reads."""
        return self.base_dir / STATE_FILE_NAME

    @property
    def log_dir(self) -> Path:
        """Directory of the daemons' log files and the jobcomp file."""
        return self.base_dir / "log"

    @property
    def processes(self) -> dict[str, DaemonProcess]:
        """Daemons started for this cluster, by role (slurmctld, slurmd, slurmrestd-tcp, ...)."""
        return dict(self._processes)

    def env(self) -> dict[str, str]:
        """Return a copy of os.environ with SLURM_CONF set, for Slurm client commands."""
        environment = dict(os.environ)
        environment["SLURM_CONF"] = str(self.slurm_conf)
        return environment

    # Lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> LocalSlurmCluster:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Write the configuration, start munged (shared), slurmctld and slurmd, and wait until the node is idle.

        Raises LocalClusterError if a daemon of this directory still runs, or if a daemon does not
        come up within `timeout` seconds. The error then shows the end of its log, and
        everything already started is stopped again.
        """
        _require_root("start a local Slurm cluster")
        for program in ("slurmctld", "slurmd", "munged", "munge", "scontrol"):
            _find_program(program)
        self._raise_if_directory_in_use()

        hostname = short_hostname()
        self.slurmctld_port, self.slurmd_port = pick_free_ports(2)
        self._prepare_directories()
        try:
            munge_socket = self.munged.acquire(self._munge_client_key, timeout)
            self.slurm_conf.write_text(
                render_slurm_conf(
                    cluster_name=self.name,
                    node_name=self.node_name,
                    hostname=hostname,
                    cpus=self.cpus,
                    memory_mb=self.memory_mb,
                    slurmctld_port=self.slurmctld_port,
                    slurmd_port=self.slurmd_port,
                    base_dir=self.base_dir,
                    munge_socket=munge_socket,
                    jwt_key=self.jwt_key,
                )
            )
            self.slurm_conf.chmod(0o644)
            self._write_state()

            # -c starts from a clean state, so jobs of an earlier run in this directory are gone.
            self._start_slurmctld_process(clean=True, timeout=timeout)
            self._start_daemon("slurmd", ["-D", "-f", str(self.slurm_conf), "-N", self.node_name])
            self._wait_for_node(timeout, require_idle=True)
        except BaseException:
            logger.error("Start of local Slurm cluster %s failed, stopping what started", self.name)
            self.stop(timeout=timeout)
            raise
        logger.info(
            "Local Slurm cluster %s is up (slurmctld port %d, slurmd port %d, conf %s)",
            self.name,
            self.slurmctld_port,
            self.slurmd_port,
            self.slurm_conf,
        )

    def stop(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Cancel remaining jobs, stop every daemon this cluster started, and release munged.

        Safe to call more than once and on a cluster that never started. munged stops only when
        no other live local cluster uses it.
        """
        if self._processes:
            logger.info("Stopping local Slurm cluster %s", self.name)
        self.stop_restd(timeout)
        self._cancel_jobs(timeout)
        for role in ("slurmd", "slurmctld"):
            self._stop_role(role, timeout)
        if self.munged.directory.is_dir():
            self.munged.release(self._munge_client_key, timeout)
        if self.base_dir.is_dir():
            self._write_state()

    def is_running(self) -> bool:
        """Return True if both slurmctld and slurmd of this cluster are alive."""
        return all(role in self._processes and self._processes[role].is_alive() for role in ("slurmctld", "slurmd"))

    def stop_slurmctld(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Stop only slurmctld, to simulate a controller outage; slurmd and jobs keep running."""
        self._stop_role("slurmctld", timeout)
        self._write_state()

    def start_slurmctld(self, timeout: float = DEFAULT_TIMEOUT, clean: bool = False) -> None:
        """Restart slurmctld after `stop_slurmctld()`, recovering its saved jobs and node state.

        With `clean`, slurmctld starts with an empty job table, as if it had purged every job;
        the jobcomp file keeps its lines. Waits until the controller responds and the node
        responds to it again.
        """
        if "slurmctld" in self._processes and self._processes["slurmctld"].is_alive():
            raise LocalClusterError(
                f"slurmctld of cluster {self.name} already runs (pid "
                f"{self._processes['slurmctld'].pid}); call stop_slurmctld() first"
            )
        self._start_slurmctld_process(clean=clean, timeout=timeout)
        self._wait_for_node(timeout, require_idle=False)

    def ping(self) -> bool:
        """Return True if `scontrol ping` reports the controller UP."""
        result = self.run(["scontrol", "ping"], check=False)
        return result.returncode == 0 and " is UP" in result.stdout

    def node_state(self) -> str | None:
        """Return the node's State from `scontrol show node` (for example IDLE, MIXED, IDLE+DRAIN), or None."""
        result = self.run(["scontrol", "-o", "show", "node", self.node_name], check=False)
        match = re.search(r"\bState=(\S+)", result.stdout)
        return match.group(1) if match else None

    def run(
        self, command: list[str], check: bool = True, timeout: float = DEFAULT_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client command against this cluster and return its result as text.

        With `check`, a non-zero exit raises LocalClusterError with the command's output.
        """
        result = subprocess.run(
            command,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise LocalClusterError(
                f"{' '.join(command)} failed with status {result.returncode} on cluster "
                f"{self.name}: {result.stderr.strip() or result.stdout.strip()}"
            )
        return result

    # REST API ----------------------------------------------------------------------------

    def token(self, lifespan: int = 3600, username: str = "root") -> str:
        """Return a JWT for `username` from `scontrol token`, valid for `lifespan` seconds."""
        if lifespan < 1:
            raise ValueError(f"Invalid token lifespan {lifespan}: expected at least 1 second")
        result = self.run(["scontrol", "token", f"username={username}", f"lifespan={lifespan}"])
        match = re.search(r"SLURM_JWT=(\S+)", result.stdout)
        if match is None:
            raise LocalClusterError(
                f"scontrol token printed no SLURM_JWT=... line on cluster {self.name}: {result.stdout.strip()!r}"
            )
        return match.group(1)

    def start_restd_tcp(self, timeout: float = DEFAULT_TIMEOUT) -> str:
        """Start slurmrestd with JWT authentication on a free port of 127.0.0.1 and return its URL.

        The URL has no trailing slash, for example http://127.0.0.1:40123. Each request needs
        the headers X-SLURM-USER-NAME and X-SLURM-USER-TOKEN (see `token()`). A second call
        returns the URL of the running slurmrestd.
        """
        if self.restd_url is not None and self._is_role_alive("slurmrestd-tcp"):
            return self.restd_url
        self._check_restd_can_read_conf()
        (port,) = pick_free_ports(1)
        environment = self._restd_environment()
        # slurmrestd(8): SLURM_JWT must be set to use JWT authentication.
        environment["SLURM_JWT"] = "daemon"
        self._start_daemon(
            "slurmrestd-tcp",
            [
                "-f",
                str(self.slurm_conf),
                "-a",
                "rest_auth/jwt",
                "-s",
                f"openapi/{OPENAPI_VERSION}",
                f"127.0.0.1:{port}",
            ],
            program="slurmrestd",
            environment=environment,
            user=RESTD_USER,
        )
        url = f"http://127.0.0.1:{port}"

        def port_accepts() -> bool:
            self._raise_if_exited("slurmrestd-tcp")
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as client:
                return client.connect_ex(("127.0.0.1", port)) == 0

        _wait_until(port_accepts, timeout, f"slurmrestd at {url}", self._processes["slurmrestd-tcp"].output_path)
        self.restd_url = url
        self._write_state()
        return url

    def start_restd_unix(self, timeout: float = DEFAULT_TIMEOUT) -> Path:
        """Start slurmrestd with rest_auth/local on a unix socket and return the socket's path.

        slurmrestd 22.05 accepts clients that run as root or as RESTD_USER and responds to
        others with 401. Either way it acts as RESTD_USER, so a job submitted through this socket
        belongs to that user. A second call returns the path of the running slurmrestd.
        """
        if self.restd_socket is not None and self._is_role_alive("slurmrestd-unix"):
            return self.restd_socket
        self._check_restd_can_read_conf()
        socket_dir = self.base_dir / "restd"
        socket_path = socket_dir / "slurmrestd.sock"
        # sun_path in sockaddr_un has room for 107 bytes of path and the terminating NUL.
        if len(str(socket_path).encode()) > 107:
            raise LocalClusterError(f"Unix socket path {socket_path} is longer than 107 bytes; use a shorter base_dir")
        socket_path.unlink(missing_ok=True)
        self._start_daemon(
            "slurmrestd-unix",
            [
                "-f",
                str(self.slurm_conf),
                "-a",
                "rest_auth/local",
                "-s",
                f"openapi/{OPENAPI_VERSION}",
                f"unix:{socket_path}",
            ],
            program="slurmrestd",
            environment=self._restd_environment(),
            user=RESTD_USER,
        )

        def socket_exists() -> bool:
            self._raise_if_exited("slurmrestd-unix")
            return socket_path.is_socket()

        _wait_until(
            socket_exists, timeout, f"slurmrestd socket {socket_path}", self._processes["slurmrestd-unix"].output_path
        )
        self.restd_socket = socket_path
        self._write_state()
        return socket_path

    def stop_restd(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Stop every slurmrestd of this cluster."""
        for role in ("slurmrestd-tcp", "slurmrestd-unix"):
            self._stop_role(role, timeout)
        self.restd_url = None
        self.restd_socket = None

    # State file --------------------------------------------------------------------------

    @classmethod
    def load(cls, base_dir: str | Path) -> LocalSlurmCluster:
        """Rebuild a cluster from the state file in `base_dir`, to inspect or stop it from another process."""
        state_file = Path(base_dir).resolve() / STATE_FILE_NAME
        try:
            state = json.loads(state_file.read_text())
        except FileNotFoundError as err:
            raise LocalClusterError(
                f"No local Slurm cluster state in {base_dir}: {state_file} is missing; "
                "start one with 'skyshift-slurm-local up'"
            ) from err
        if state.get("format_version") != STATE_FORMAT_VERSION:
            raise LocalClusterError(
                f"State file {state_file} has format version {state.get('format_version')!r}, "
                f"expected {STATE_FORMAT_VERSION}; stop its daemons by hand and remove the file"
            )
        cluster = cls(state["name"], state["base_dir"], state["cpus"], state["memory_mb"], state["munge_dir"])
        cluster.slurmctld_port = state["slurmctld_port"]
        cluster.slurmd_port = state["slurmd_port"]
        cluster.restd_url = state["restd_url"]
        cluster.restd_socket = Path(state["restd_socket"]) if state["restd_socket"] else None
        cluster._processes = {role: DaemonProcess(**process) for role, process in state["processes"].items()}
        return cluster

    def status(self) -> dict[str, Any]:
        """Return the state file's content plus whether each daemon and the controller respond."""
        status = self._state()
        status["running"] = self.is_running()
        status["controller_up"] = self.ping() if self.slurm_conf.is_file() else False
        status["node_state"] = self.node_state() if status["controller_up"] else None
        for role, process in status["processes"].items():
            process["alive"] = self._processes[role].is_alive()
        return status

    def _state(self) -> dict[str, Any]:
        return {
            "format_version": STATE_FORMAT_VERSION,
            "name": self.name,
            "base_dir": str(self.base_dir),
            "cpus": self.cpus,
            "memory_mb": self.memory_mb,
            "node_name": self.node_name,
            "partition": self.partition,
            "slurm_conf": str(self.slurm_conf),
            "slurmctld_port": self.slurmctld_port,
            "slurmd_port": self.slurmd_port,
            "munge_dir": str(self.munged.directory),
            "restd_url": self.restd_url,
            "restd_socket": str(self.restd_socket) if self.restd_socket else None,
            "processes": {role: asdict(process) for role, process in self._processes.items()},
        }

    def _write_state(self) -> None:
        # Write then rename, so that a reader in another process never reads a partial file.
        temporary = self.state_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(self._state(), indent=2) + "\n")
        temporary.replace(self.state_file)
        live = [process for process in self._processes.values() if process.is_alive()]
        if live and self.munged.directory.is_dir():
            self.munged.update_client(self._munge_client_key, live)

    # Helpers -----------------------------------------------------------------------------

    def _raise_if_directory_in_use(self) -> None:
        if not self.state_file.is_file():
            return
        previous = LocalSlurmCluster.load(self.base_dir)
        alive = [f"{role} (pid {process.pid})" for role, process in previous._processes.items() if process.is_alive()]
        if alive:
            raise LocalClusterError(
                f"Directory {self.base_dir} belongs to local Slurm cluster {previous.name!r}, "
                f"which still runs {', '.join(alive)}; stop it first with "
                f"'skyshift-slurm-local down --dir {self.base_dir}'"
            )

    def _prepare_directories(self) -> None:
        # slurmrestd runs as RESTD_USER and must reach slurm.conf, so the cluster directory is
        # readable by others. The JWT key stays readable by root only.
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.base_dir.chmod(0o755)
        for subdirectory in ("state", "spool", "log", "run"):
            (self.base_dir / subdirectory).mkdir(exist_ok=True)
        restd_dir = self.base_dir / "restd"
        restd_dir.mkdir(exist_ok=True)
        if _user_exists(RESTD_USER):
            shutil.chown(restd_dir, RESTD_USER, RESTD_USER)
        if not self.jwt_key.is_file():
            # Slurm's JWT guide (slurm.schedmd.com/jwt.html) makes the HS256 key from 32 random
            # bytes and requires a file owned by SlurmUser or root that others cannot read.
            descriptor = os.open(self.jwt_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as key_file:
                key_file.write(secrets.token_bytes(32))
        self.jwt_key.chmod(0o400)

    def _start_daemon(
        self,
        role: str,
        arguments: list[str],
        program: str | None = None,
        environment: dict[str, str] | None = None,
        user: str | None = None,
    ) -> DaemonProcess:
        process, popen = _spawn_daemon(
            program or role,
            arguments,
            self.log_dir / f"{role}.out",
            environment=environment if environment is not None else self.env(),
            user=user,
        )
        self._processes[role] = process
        self._popens[role] = popen
        self._write_state()
        return process

    def _start_slurmctld_process(self, clean: bool, timeout: float) -> None:
        arguments = ["-D", "-f", str(self.slurm_conf)]
        if clean:
            arguments.insert(0, "-c")
        self._start_daemon("slurmctld", arguments)

        def controller_up() -> bool:
            self._raise_if_exited("slurmctld")
            return self.ping()

        _wait_until(
            controller_up, timeout, f"slurmctld of cluster {self.name} to respond", self.log_dir / "slurmctld.log"
        )

    def _wait_for_node(self, timeout: float, require_idle: bool) -> None:
        def node_ready() -> bool:
            self._raise_if_exited("slurmd")
            self._raise_if_exited("slurmctld")
            state = self.node_state()
            if state is None:
                return False
            base_state, *flags = state.split("+")
            if require_idle:
                return base_state == "IDLE" and not flags
            return base_state in ("IDLE", "MIXED", "ALLOCATED") and "NOT_RESPONDING" not in flags

        expected_state = "idle" if require_idle else "responding"
        _wait_until(node_ready, timeout, f"node {self.node_name} to be {expected_state}", self.log_dir / "slurmd.log")

    def _raise_if_exited(self, role: str) -> None:
        process = self._processes[role]
        popen = self._popens.get(role)
        exited = popen.poll() is not None if popen is not None else not process.is_alive()
        if exited:
            raise LocalClusterError(
                f"{process.program} of cluster {self.name} exited during start; last lines of "
                f"{process.output_path}:\n{_tail(process.output_path)}"
            )

    def _is_role_alive(self, role: str) -> bool:
        return role in self._processes and self._processes[role].is_alive()

    def _stop_role(self, role: str, timeout: float) -> None:
        process = self._processes.get(role)
        if process is None:
            return
        _stop_process(process, self._popens.get(role), timeout)
        del self._processes[role]
        self._popens.pop(role, None)

    def _cancel_jobs(self, timeout: float) -> None:
        """Cancel this cluster's jobs and wait for their steps to end, so that none outlives slurmd.

        Only slurmctld can cancel a job. When it is down (after `stop_slurmctld()`) while job
        steps still run, it is started again for the cancellation.
        """
        if not self._is_role_alive("slurmd"):
            return
        if not self._is_role_alive("slurmctld"):
            if not self._job_step_sockets():
                return
            logger.info("Restarting slurmctld of cluster %s to cancel its running jobs", self.name)
            try:
                self.start_slurmctld(timeout)
            except LocalClusterError as err:
                logger.warning("Cannot cancel the jobs of cluster %s: %s", self.name, err)
                return

        listing = self.run(["squeue", "-h", "-o", "%A"], check=False)
        job_ids = listing.stdout.split()
        if listing.returncode == 0 and job_ids:
            logger.info("Cancelling jobs %s on cluster %s", ", ".join(job_ids), self.name)
            self.run(["scancel", *job_ids], check=False)

        def jobs_ended() -> bool:
            result = self.run(["squeue", "-h", "-o", "%A"], check=False)
            queue_empty = result.returncode == 0 and not result.stdout.split()
            return queue_empty and not self._job_step_sockets()

        try:
            _wait_until(jobs_ended, timeout, f"cancelled jobs of cluster {self.name} to end")
        except LocalClusterError as err:
            logger.warning("Stopping cluster %s with jobs still running: %s", self.name, err)

    def _job_step_sockets(self) -> list[Path]:
        """Return the sockets of running job steps, which slurmstepd keeps in SlurmdSpoolDir.

        slurmstepd names each socket <NodeName>_<job id>.<step id> and removes it when the step ends.
        """
        spool_dir = self.base_dir / "spool"
        if not spool_dir.is_dir():
            return []
        return [entry for entry in spool_dir.glob(f"{self.node_name}_*") if entry.is_socket()]

    def _restd_environment(self) -> dict[str, str]:
        environment = {key: value for key, value in os.environ.items() if not key.startswith("SLURM")}
        environment["SLURM_CONF"] = str(self.slurm_conf)
        return environment

    def _check_restd_can_read_conf(self) -> None:
        if not self.is_running():
            raise LocalClusterError(f"Cluster {self.name} is not running; call start() before starting slurmrestd")
        if not _user_exists(RESTD_USER):
            raise LocalClusterError(
                f"User {RESTD_USER!r} not found: slurmrestd exits when started as root, so it runs "
                "as that user. Run scripts/install-slurm.sh to create it"
            )
        if not _user_can_read(RESTD_USER, self.slurm_conf):
            raise LocalClusterError(
                f"User {RESTD_USER!r} cannot read {self.slurm_conf}; every parent directory of "
                f"{self.base_dir} must be searchable by others (for example mode 0755)"
            )


def _user_exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skyshift-slurm-local",
        description="Start, stop and inspect a single-node Slurm cluster on 127.0.0.1.",
    )
    subcommands = parser.add_subparsers(dest="command", required=True)

    up = subcommands.add_parser("up", help="start a cluster and print its state as JSON")
    up.add_argument("--name", required=True, help="Slurm ClusterName (lowercase, unique here)")
    up.add_argument("--dir", required=True, type=Path, help="directory for config, state and logs")
    up.add_argument("--cpus", type=int, help="CPUs of the node (default: nproc)")
    up.add_argument(
        "--memory",
        type=int,
        help="RealMemory of the node in MiB (default: MemTotal less 10%%, and at least 512 MiB less)",
    )
    up.add_argument("--restd-tcp", action="store_true", help="also start slurmrestd with JWT on 127.0.0.1")
    up.add_argument(
        "--munge-dir",
        type=Path,
        default=DEFAULT_MUNGE_DIR,
        help=f"directory of the munged shared with other local clusters (default: {DEFAULT_MUNGE_DIR})",
    )
    up.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per step")

    down = subcommands.add_parser("down", help="stop every daemon that 'up' started in DIR")
    down.add_argument("--dir", required=True, type=Path)
    down.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per step")

    stop_munged = subcommands.add_parser(
        "stop-munged", help="stop the shared munged if no running local cluster uses it"
    )
    stop_munged.add_argument("--munge-dir", type=Path, default=DEFAULT_MUNGE_DIR, help="directory of the munged")
    stop_munged.add_argument("--force", action="store_true", help="stop it even while clusters use it")

    status = subcommands.add_parser(
        "status", help="print the cluster's state as JSON; exit status 3 if it is not running"
    )
    status.add_argument("--dir", required=True, type=Path)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status: 0 on success, 1 on failure, 3 if status finds it stopped."""
    arguments = _build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    try:
        if arguments.command == "up":
            cluster = LocalSlurmCluster(
                arguments.name, arguments.dir, arguments.cpus, arguments.memory, arguments.munge_dir
            )
            cluster.start(timeout=arguments.timeout)
            if arguments.restd_tcp:
                cluster.start_restd_tcp(timeout=arguments.timeout)
            print(json.dumps(cluster.status(), indent=2))
            return 0
        if arguments.command == "down":
            LocalSlurmCluster.load(arguments.dir).stop(timeout=arguments.timeout)
            return 0
        if arguments.command == "stop-munged":
            munged = SharedMunged(arguments.munge_dir)
            if arguments.force:
                munged.stop()
            elif not munged.stop_if_unused():
                logger.error("munged in %s still has live clients; use --force to stop it anyway", munged.directory)
                return 1
            return 0
        status = LocalSlurmCluster.load(arguments.dir).status()
        print(json.dumps(status, indent=2))
        return 0 if status["running"] else 3
    except (LocalClusterError, ValueError) as err:
        logger.error("%s", err)
        return 1


if __name__ == "__main__":
    sys.exit(main())
