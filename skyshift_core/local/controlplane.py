"""The local control plane of `skyshift up`, `down` and `status`: etcd, the API server and the controller
manager as detached processes on this machine.

Everything lives in one state directory: `state.json` (settings, including the path and SHA-256 of the
controller manager's config file, and the pid, argv and start time of each process), `logs/` (with the
API server's `audit.log`), `etcd/` (etcd's data), `config.yaml` (the client config with the
administrator's token), `admin.password` and `controller-manager.token`. The last three have mode 0600.
A recorded pid counts as ours only while /proc shows the same command line and start time, so a reused
pid is never signalled.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from skyshift_core.errors import ControlPlaneError, SkyShiftError
from skyshift_core.local.etcd import EtcdProcess, find_etcd
from skyshift_core.local.processes import free_port, is_alive, reap, stop_process

if TYPE_CHECKING:
    from skyshift_core.auth.bootstrap import BootstrapResult

logger = logging.getLogger(__name__)

ETCD = "etcd"
API_SERVER = "api-server"
CONTROLLER_MANAGER = "controller-manager"
COMPONENTS = (ETCD, API_SERVER, CONTROLLER_MANAGER)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 50051
DEFAULT_ETCD_PREFIX = "/skyshift"
# Default seconds each component may take to become ready before `up` gives up.
READY_TIMEOUT = 60.0
LOG_TAIL_LINES = 20
# Seconds between SIGTERM and SIGKILL when stopping a process that failed to start.
FAILED_START_STOP_TIMEOUT = 3.0

STATE_FILE = "state.json"
# Held by `up` and `down` while they run (see `LocalControlPlane.exclusive`).
LOCK_FILE = "lock"
CONFIG_FILE = "config.yaml"
READY_FILE = "controller-manager.ready"
ADMIN_PASSWORD_FILE = "admin.password"
CONTROLLER_MANAGER_TOKEN_FILE = "controller-manager.token"
AUDIT_LOG_FILE = "audit.log"


def read_cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0")[:-1]]


def etcd_using_data_dir(data_dir: Path) -> tuple[int, list[str]] | None:
    """Return the pid and command line of a running etcd whose --data-dir is `data_dir`, or None.

    Reads /proc, so it finds only the processes of this machine and PID namespace."""
    target = data_dir.resolve()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        argv = read_cmdline(pid)
        if not argv or Path(argv[0]).name != "etcd" or not is_alive(pid):
            continue
        value = _option_value(argv, "--data-dir")
        if value is None:
            continue
        try:
            # A relative --data-dir is relative to that process's working directory.
            directory = Path(os.readlink(f"/proc/{pid}/cwd")) / value
        except OSError:
            continue
        if directory.resolve() == target:
            return pid, argv
    return None


def _option_value(argv: list[str], option: str) -> str | None:
    """Return the value of `option` in `argv`, written as `--option VALUE` or `--option=VALUE`."""
    for index, argument in enumerate(argv):
        if argument == option and index + 1 < len(argv):
            return argv[index + 1]
        if argument.startswith(option + "="):
            return argument.partition("=")[2]
    return None


def read_start_time(pid: int) -> int | None:
    """Return the process start time in clock ticks after boot (field 22 of /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name in field 2 may contain spaces and parentheses, so split after its closing one.
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


@dataclass
class ProcessRecord:
    """A process that `up` started: enough to recognise it later and to point users at it."""

    pid: int
    argv: list[str]
    start_time: int | None
    log: str
    endpoint: str

    @classmethod
    def of(cls, pid: int, argv: list[str], log: Path, endpoint: str) -> ProcessRecord:
        return cls(pid, list(argv), read_start_time(pid), str(log), endpoint)

    def is_running(self) -> bool:
        """True while the pid is alive, not a zombie, and still runs the command that was started."""
        if not is_alive(self.pid):
            return False
        return read_cmdline(self.pid) == self.argv and read_start_time(self.pid) == self.start_time


@dataclass
class ControlPlaneState:
    """The settings of the last `up` and the processes it started; stored as STATE/state.json."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    # Endpoints of an etcd that `up` did not start (--etcd); None when `up` runs a local etcd.
    external_etcd: list[str] | None = None
    etcd_client_port: int | None = None
    etcd_peer_port: int | None = None
    # Absolute path of the controller manager's config file (its --config), or None for its built-in
    # settings, and the SHA-256 of the content that `up` checked before starting it.
    controller_manager_config: str | None = None
    controller_manager_config_digest: str | None = None
    processes: dict[str, ProcessRecord] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> ControlPlaneState:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as error:
            raise ControlPlaneError(f"cannot read {path}: {error}; delete it if no control plane runs") from error
        try:
            processes = {name: ProcessRecord(**record) for name, record in (data.pop("processes", None) or {}).items()}
            return cls(**data, processes=processes)
        except TypeError as error:
            raise ControlPlaneError(
                f"{path} has unexpected content ({error}); delete it if no control plane runs"
            ) from error

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.replace(temporary, path)

    @property
    def server_url(self) -> str:
        return server_url(self.host, self.port)

    @property
    def etcd_endpoints(self) -> list[str]:
        if self.external_etcd is not None:
            return list(self.external_etcd)
        return [f"127.0.0.1:{self.etcd_client_port}"]


def server_url(host: str, port: int) -> str:
    """Return the URL clients use for an API server bound to `host`; a wildcard address is reached on loopback."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


# Seconds `up` waits for a connection to an external etcd endpoint before it tries the next one.
EXTERNAL_ETCD_CONNECT_TIMEOUT = 2.0


def _check_external_etcd(endpoints: list[str]) -> None:
    """Raise ControlPlaneError unless some endpoint of `--etcd` accepts a connection.

    Without this, the API server would start, wait for etcd, and `up` would report it not ready."""
    from skyshift_core.store.etcd import parse_endpoint

    failures = []
    for endpoint in endpoints:
        try:
            host, port = parse_endpoint(endpoint)
        except ValueError as error:
            raise ControlPlaneError(f"{error}; correct --etcd") from error
        try:
            with socket.create_connection((host, port), timeout=EXTERNAL_ETCD_CONNECT_TIMEOUT):
                return
        except OSError as error:
            failures.append(f"{endpoint}: {error.strerror or error}")
    raise ControlPlaneError(
        f"cannot connect to etcd at {', '.join(failures)}; start etcd there or correct --etcd. Nothing was started"
    )


def port_in_use(host: str, port: int) -> bool:
    """Return True when something listens on host:port. SO_REUSEADDR matches how uvicorn binds, so TIME_WAIT is no obstacle."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except socket.gaierror as error:
            raise ControlPlaneError(
                f"invalid --host {host!r}: {error}; pass an IP address such as 127.0.0.1"
            ) from error
        except OSError as error:
            if error.errno == errno.EADDRNOTAVAIL:
                raise ControlPlaneError(
                    f"invalid --host {host!r}: no network interface of this machine has that address"
                ) from error
            return True
    return False


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


class Progress:
    """Receives one `starting` and one `finished` (or `failed`) per component while `up` runs."""

    def starting(self, component: str) -> None:
        pass

    def finished(self, component: str, outcome: str) -> None:
        pass

    def failed(self, component: str) -> None:
        pass


class ProcessExitedError(ControlPlaneError):
    """A component's process exited while `up` waited for it to become ready."""


@dataclass
class ComponentStatus:
    """One row of `skyshift status`."""

    component: str
    pid: int | None
    status: str
    endpoint: str
    log: str
    # The controller manager's config file; "-" for the other components and without one.
    config: str = "-"


def _file_digest(path: str) -> str:
    """Return the SHA-256 of a file's content, in hex; raise OSError when it cannot be read."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _read_failure(path: str, error: OSError) -> str:
    """Return the message for a controller manager config file that could not be read."""
    reason = "not found" if isinstance(error, FileNotFoundError) else f"unreadable ({error})"
    return f"controller manager config {path}: {reason}"


def _config_change(path: str, digest: str | None) -> str:
    """Return a note for `status` when a running controller manager's config file changed since it started."""
    try:
        current = _file_digest(path)
    except OSError:
        return " (file gone since start)"
    return "" if current == digest else " (changed since start; run down and up to apply)"


class LocalControlPlane:
    def __init__(self, state_dir: Path, ready_timeout: float = READY_TIMEOUT):
        self.state_dir = Path(state_dir).expanduser().absolute()
        # Seconds each component may take to become ready.
        self.ready_timeout = ready_timeout
        self.state_path = self.state_dir / STATE_FILE
        self.config_path = self.state_dir / CONFIG_FILE
        self.logs_dir = self.state_dir / "logs"
        self.etcd_dir = self.state_dir / "etcd"
        self.ready_path = self.state_dir / READY_FILE
        self.admin_password_path = self.state_dir / ADMIN_PASSWORD_FILE
        self.controller_manager_token_path = self.state_dir / CONTROLLER_MANAGER_TOKEN_FILE
        self.audit_log_path = self.logs_dir / AUDIT_LOG_FILE
        # Set by `up`: the administrator's credentials and what bootstrapping created.
        self.bootstrap_result: BootstrapResult | None = None

    def load_state(self) -> ControlPlaneState:
        return ControlPlaneState.load(self.state_path)

    def prepare_state_dir(self) -> None:
        """Create the state directory and its logs folder; raise ControlPlaneError when that is not possible."""
        advice = "choose a directory you may write with --state-dir or SKYSHIFT_STATE_DIR"
        if self.state_dir.exists() and not self.state_dir.is_dir():
            raise ControlPlaneError(
                f"cannot use the state directory {self.state_dir}: it is a file, not a directory; {advice}"
            )
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self.logs_dir.mkdir(exist_ok=True)
        except OSError as error:
            reason = error.strerror or str(error)
            where = f" ({error.filename})" if error.filename and Path(error.filename) != self.state_dir else ""
            message = f"cannot use the state directory {self.state_dir}: {reason}{where}; {advice}"
            raise ControlPlaneError(message) from error
        if not os.access(self.state_dir, os.W_OK | os.X_OK):
            raise ControlPlaneError(f"cannot use the state directory {self.state_dir}: it is not writable; {advice}")

    @contextlib.contextmanager
    def exclusive(self, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
        """Hold the state directory's lock, so that runs of `up` and `down` on it take turns.

        Two runs at once would each start a controller manager, and state.json would record one.
        `on_wait` is called once when another run holds the lock."""
        with open(self.state_dir / LOCK_FILE, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait is not None:
                    on_wait()
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def log_path(self, component: str) -> Path:
        return self.logs_dir / f"{component}.log"

    # ---- up -------------------------------------------------------------------------------------

    def up(
        self,
        *,
        etcd: list[str] | None = None,
        host: str | None = None,
        port: int | None = None,
        progress: Progress | None = None,
        admin_token: str | None = None,
        controller_manager_config: str | Path | None = None,
        on_wait: Callable[[], None] | None = None,
    ) -> ControlPlaneState:
        """Start whatever is not running, wait until everything is ready, and return the state.

        Once the API server is ready, authentication is bootstrapped (`skyshift_core.auth.bootstrap`):
        the controller manager's token goes to `controller-manager.token`, a new administrator's
        password to `admin.password`, and `bootstrap_result` holds the administrator's token, which
        is `admin_token` again while that one is valid.

        A left-out `host` or `port` takes the value that the last `up` recorded in state.json, or the
        default when there is none. A left-out `etcd` keeps the recorded etcd while any component of
        this control plane still runs, and otherwise means a local etcd. ControlPlaneError is raised when a running component uses other
        settings than requested, or when a component fails to start. Before it raises, this call stops
        the processes it started.

        `controller_manager_config` is the controller manager's config file (its --config). Left out,
        the file that the last `up` recorded is used again; an empty string means none, so the
        controller manager runs with its built-in settings. The file is checked, profiles and
        plugins included, before anything starts. A running controller manager is never restarted,
        so ControlPlaneError is raised when it runs with another file, or with content that has
        changed since it started.

        Runs of `up` and `down` on one state directory take turns (see `exclusive`).
        """
        self.prepare_state_dir()
        with self.exclusive(on_wait):
            return self._up(etcd, host, port, progress or Progress(), admin_token, controller_manager_config)

    def _up(
        self,
        etcd: list[str] | None,
        host: str | None,
        port: int | None,
        progress: Progress,
        admin_token: str | None,
        controller_manager_config: str | Path | None,
    ) -> ControlPlaneState:
        state = self.load_state()
        running = {name for name, record in state.processes.items() if record.is_running()}
        self._check_settings(state, running, etcd, host, port)
        self._set_controller_manager_config(state, running, controller_manager_config)

        if API_SERVER not in running:
            # Keep the recorded address, because a controller manager that still runs was started with it.
            state.host = host or state.host
            state.port = port or state.port
        if etcd is not None:
            state.external_etcd = etcd
        elif ETCD in running or not running:
            # Components that still run keep the etcd they were started with, external or local.
            state.external_etcd = None
        self._check_controller_manager_server(state, running, host, port)
        self._preflight(state, running)

        started: list[str] = []
        component = ETCD
        try:
            for component in COMPONENTS:
                if component == ETCD and state.external_etcd is not None:
                    state.processes.pop(ETCD, None)
                    progress.finished(ETCD, f"external ({', '.join(state.external_etcd)})")
                    continue
                if component == CONTROLLER_MANAGER:
                    self.bootstrap_result = self._bootstrap(state, admin_token)
                record = state.processes.get(component)
                if component in running and record is not None:
                    if self._wait_for_running(component, state, record):
                        progress.finished(component, f"already running (pid {record.pid}, {record.endpoint})")
                        continue
                    progress.finished(component, f"pid {record.pid} exited while up waited for it to be ready")
                    self._check_api_port(state, running)
                progress.starting(component)
                record = self._start(component, state)
                state.processes[component] = record
                started.append(component)
                state.save(self.state_path)
                self._wait_until_ready(component, state, record)
                progress.finished(component, f"ready (pid {record.pid}, {record.endpoint})")
        except BaseException:
            progress.failed(component)
            self._stop_started(state, started)
            raise
        state.save(self.state_path)
        return state

    def _check_settings(
        self, state: ControlPlaneState, running: set[str], etcd: list[str] | None, host: str | None, port: int | None
    ) -> None:
        if API_SERVER in running:
            record = state.processes[API_SERVER]
            if (host and host != state.host) or (port and port != state.port):
                raise ControlPlaneError(
                    f"the API server is already running at {state.server_url} (pid {record.pid}); "
                    "run skyshift down first to change --host or --port"
                )
            if etcd is not None and etcd != state.etcd_endpoints:
                raise ControlPlaneError(
                    f"the API server is already running with etcd at {', '.join(state.etcd_endpoints)} "
                    f"(pid {record.pid}); run skyshift down first to change --etcd"
                )
        if ETCD in running and etcd is not None:
            raise ControlPlaneError(
                f"a local etcd started by skyshift up is running (pid {state.processes[ETCD].pid}); "
                "run skyshift down first to switch to --etcd"
            )

    def _check_controller_manager_server(
        self, state: ControlPlaneState, running: set[str], host: str | None, port: int | None
    ) -> None:
        """Raise unless a running controller manager was started with the API server URL of `state`."""
        record = state.processes.get(CONTROLLER_MANAGER)
        if CONTROLLER_MANAGER not in running or record is None or record.endpoint == state.server_url:
            return
        # A controller manager's record stores the --server URL it was started with as its endpoint.
        verb = "runs" if API_SERVER in running else "would start"
        if host or port:
            advice = (
                f"Leave out --host and --port to keep {record.endpoint}, or run "
                f"skyshift down --state-dir {self.state_dir} first to change them."
            )
        else:
            advice = f"Run skyshift down --state-dir {self.state_dir}, then skyshift up."
        raise ControlPlaneError(
            f"the controller manager (pid {record.pid}) is running and sends its requests to {record.endpoint}, "
            f"but the API server {verb} at {state.server_url}, so the controller manager could not reach it. "
            + advice
        )

    def _set_controller_manager_config(
        self, state: ControlPlaneState, running: set[str], requested: str | Path | None
    ) -> None:
        """Record the controller manager's config file in `state` after checking it.

        Raise ControlPlaneError when the file cannot be used, or when a running controller manager
        was started with another file or with other content, since `up` does not restart it.
        """
        if requested is None:
            path = state.controller_manager_config
        else:
            path = str(Path(requested).expanduser().absolute()) if str(requested) else None
        try:
            digest = None if path is None else _file_digest(path)
        except OSError as error:
            digest, read_error = None, error
        else:
            read_error = None

        record = state.processes.get(CONTROLLER_MANAGER)
        if CONTROLLER_MANAGER in running and record is not None:
            changed = path != state.controller_manager_config or digest != state.controller_manager_config_digest
            if changed and path is not None:
                # A file that could not be used anyway is reported first: advice to restart with it
                # would leave the control plane stopped.
                running_with = state.controller_manager_config or "its built-in settings"
                advice = f"Nothing was changed; the controller manager (pid {record.pid}) runs on with {running_with}."
                if read_error is not None:
                    raise ControlPlaneError(f"{_read_failure(path, read_error)}\n{advice}")
                self._check_config_file(Path(path), advice)
            self._check_running_config(state, record, path, digest, read_error)
            return

        if path is not None:
            # A recorded file may have been removed since, so the message names its origin and how to run without it.
            advice = (
                "The last skyshift up recorded this file. Restore it, or run without one: "
                f"skyshift up --state-dir {shlex.quote(str(self.state_dir))} --controller-manager-config ''"
                if requested is None
                else "Nothing was started."
            )
            if read_error is not None:
                raise ControlPlaneError(f"{_read_failure(path, read_error)}\n{advice}")
            self._check_config_file(Path(path), advice)
        state.controller_manager_config = path
        state.controller_manager_config_digest = digest

    def _check_running_config(
        self,
        state: ControlPlaneState,
        record: ProcessRecord,
        path: str | None,
        digest: str | None,
        read_error: OSError | None,
    ) -> None:
        """Raise ControlPlaneError unless the running controller manager uses `path` with content `digest`."""
        running_with = state.controller_manager_config or "its built-in settings (no config file)"
        state_dir = shlex.quote(str(self.state_dir))
        config_argument = shlex.quote(path) if path is not None else "''"
        restart = (
            f"skyshift up does not restart a running controller manager. To apply the change, run "
            f"skyshift down --state-dir {state_dir}, then "
            f"skyshift up --state-dir {state_dir} --controller-manager-config {config_argument}"
        )
        if path != state.controller_manager_config:
            requested = path or "no config file"
            raise ControlPlaneError(
                f"the controller manager (pid {record.pid}) runs with {running_with}, but {requested} was "
                f"requested; {restart}"
            )
        if digest != state.controller_manager_config_digest:
            change = f"can no longer be read ({read_error})" if read_error is not None else "has changed"
            raise ControlPlaneError(
                f"the controller manager (pid {record.pid}) runs with {path} as it was when it started, and the "
                f"file {change} since; {restart}"
            )

    def _check_config_file(self, path: Path, advice: str) -> None:
        """Raise ControlPlaneError, with `advice`, unless the controller manager would start with this config file."""
        # Imported here because importing the controllers is slow and only this check needs them.
        from skyshift_core.controllers.manager import check_config

        try:
            check_config(path)
        except ValueError as error:
            # check_config's messages name the file and the setting or plugin at fault.
            raise ControlPlaneError(f"{error}\n{advice}") from error

    def _preflight(self, state: ControlPlaneState, running: set[str]) -> None:
        """Check what can be checked before anything starts, so a failure leaves nothing behind."""
        if state.external_etcd is None and ETCD not in running:
            try:
                find_etcd()
            except FileNotFoundError as error:
                raise ControlPlaneError(str(error)) from error
            foreign = etcd_using_data_dir(self.etcd_dir)
            if foreign is not None:
                pid, argv = foreign
                raise ControlPlaneError(
                    f"another etcd (pid {pid}), which skyshift up did not start, uses this control plane's data "
                    f"directory {self.etcd_dir}: {' '.join(argv)}. Two etcd processes must not share a data "
                    f"directory: stop that one (kill {pid}), then run skyshift up again, which starts etcd itself"
                )
            ports = (state.etcd_client_port, state.etcd_peer_port)
            if None in ports or any(port_in_use("127.0.0.1", port) for port in ports):
                if API_SERVER in running:
                    raise ControlPlaneError(
                        f"etcd is not running and its ports {ports[0]} and {ports[1]} are not both free, but the "
                        "running API server expects etcd on them; run skyshift down, then skyshift up"
                    )
                state.etcd_client_port, state.etcd_peer_port = free_port(), free_port()
        if state.external_etcd is not None and API_SERVER not in running:
            _check_external_etcd(state.external_etcd)
        if API_SERVER not in running:
            self._check_api_port(state, running)

    def _check_api_port(self, state: ControlPlaneState, running: set[str]) -> None:
        """Raise unless the API server's port is free, with advice that fits the components in `running`."""
        if not port_in_use(state.host, state.port):
            return
        message = (
            f"port {state.port} on {state.host} is already in use by another process, so the API server "
            "cannot listen there"
        )
        if CONTROLLER_MANAGER in running:
            raise ControlPlaneError(
                f"{message}. The running controller manager expects the API server on this port, so stop the "
                f"other process, or run skyshift down --state-dir {self.state_dir} and then "
                f"skyshift up --port {state.port + 1}"
            )
        raise ControlPlaneError(
            f"{message}; choose another port with --port, for example: skyshift up --port {state.port + 1}"
        )

    def _start(self, component: str, state: ControlPlaneState) -> ProcessRecord:
        log = self.log_path(component)
        if component == ETCD:
            etcd = EtcdProcess(
                data_dir=self.etcd_dir,
                client_port=state.etcd_client_port or 0,
                peer_port=state.etcd_peer_port or 0,
                log_path=log,
            )
            try:
                etcd.start(timeout=self.ready_timeout)
            except RuntimeError as error:
                raise ControlPlaneError(f"etcd failed to start: {error}") from error
            return ProcessRecord.of(etcd.pid, etcd.command(), log, etcd.endpoint)

        command = [sys.executable, "-m", "skyshift_core.cli.main"]
        if component == API_SERVER:
            argv = command + [
                "api-server", "--etcd", ",".join(state.etcd_endpoints), "--host", state.host, "--port", str(state.port),
                "--audit-log", str(self.audit_log_path),
            ]  # fmt: skip
            endpoint = state.server_url
        else:
            self.ready_path.unlink(missing_ok=True)
            argv = command + [
                "controller-manager", "--server", state.server_url, "--ready-file", str(self.ready_path),
                "--token-file", str(self.controller_manager_token_path),
            ]  # fmt: skip
            if state.controller_manager_config is not None:
                argv += ["--config", state.controller_manager_config]
            endpoint = state.server_url
        with open(log, "ab") as output:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                cwd=self.state_dir, start_new_session=True,
            )  # fmt: skip
        return ProcessRecord.of(process.pid, argv, log, endpoint)

    def _bootstrap(self, state: ControlPlaneState, admin_token: str | None) -> BootstrapResult:
        """Create the built-in Roles, the administrator and the controller manager's identity unless
        they exist, and write the credentials that the state directory keeps."""
        # Imported here: etcd's client and password hashing would slow every CLI command.
        from skyshift_core.auth.bootstrap import bootstrap, run_sync, write_private_file
        from skyshift_core.store import Store

        try:
            cm_token = self.controller_manager_token_path.read_text().strip() or None
        except FileNotFoundError:
            cm_token = None

        async def run() -> BootstrapResult:
            store = Store(state.etcd_endpoints, root=DEFAULT_ETCD_PREFIX)
            try:
                return await bootstrap(store, admin_token=admin_token, controller_manager_token=cm_token)
            finally:
                await store.close()

        try:
            result = run_sync(run)
        except SkyShiftError as error:
            raise ControlPlaneError(f"bootstrapping users and Roles in etcd failed: {error.message}") from error
        if result.controller_manager_token != cm_token:
            write_private_file(self.controller_manager_token_path, result.controller_manager_token + "\n")
        if result.admin_password is not None:
            write_private_file(self.admin_password_path, result.admin_password + "\n")
        return result

    def _wait_for_running(self, component: str, state: ControlPlaneState, record: ProcessRecord) -> bool:
        """Wait until an API server that ran when `up` began is ready; return False if it exits first.

        Other components count as ready while they run. After SIGTERM the API server closes its port
        at once but keeps running while it closes open watches, for up to the timeout_graceful_shutdown
        that skyshift_core.api.server gives uvicorn. So `up` can find a running API server that will
        never be ready again.
        """
        if component != API_SERVER:
            return True
        advice = (
            f"it was running before this up began, so stop it with skyshift down --state-dir {self.state_dir}, "
            "then run skyshift up again"
        )
        try:
            self._wait_for_api(state, record, advice=advice)
        except ProcessExitedError:
            logger.info("The API server (pid %d) exited while up waited for it; starting a new one", record.pid)
            return False
        return True

    def _wait_until_ready(self, component: str, state: ControlPlaneState, record: ProcessRecord) -> None:
        if component == API_SERVER:
            self._wait_for_api(state, record)
        elif component == CONTROLLER_MANAGER:
            self._wait_for(
                component, record, lambda: None if self._controller_manager_ready(record) else "not ready yet"
            )

    def _wait_for_api(self, state: ControlPlaneState, record: ProcessRecord, advice: str | None = None) -> None:
        def probe() -> str | None:
            try:
                response = httpx.get(state.server_url + "/readyz", timeout=2.0)
            except httpx.HTTPError as error:
                return f"GET /readyz failed: {error}"
            return (
                None
                if response.status_code == 200
                else f"/readyz answered {response.status_code}: {response.text.strip()}"
            )

        self._wait_for(API_SERVER, record, probe, advice)

    def _controller_manager_ready(self, record: ProcessRecord) -> bool:
        try:
            return self.ready_path.read_text().strip() == str(record.pid)
        except OSError:
            return False

    def _wait_for(
        self, component: str, record: ProcessRecord, probe: Callable[[], str | None], advice: str | None = None
    ) -> None:
        """Poll `probe` (None when ready, else why not) until ready, the process exits, or the timeout passes.

        ProcessExitedError is raised when the process exits, ControlPlaneError (with `advice`, when
        given) when the timeout passes.
        """
        deadline = time.monotonic() + self.ready_timeout
        while (reason := probe()) is not None:
            if not is_alive(record.pid):
                reap(record.pid)
                raise ProcessExitedError(
                    f"{component} exited while starting; last lines of {record.log}:\n{log_tail(Path(record.log))}"
                )
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"{component} (pid {record.pid}) was not ready within {self.ready_timeout:g} s ({reason}); "
                    + (f"{advice}; " if advice else "")
                    + f"last lines of {record.log}:\n{log_tail(Path(record.log))}"
                )
            time.sleep(0.1)

    def _stop_started(self, state: ControlPlaneState, started: list[str]) -> None:
        for component in reversed(started):
            record = state.processes.pop(component)
            if record.is_running():
                # A process that failed to start has nothing to shut down gracefully, so SIGKILL comes sooner.
                stop_process(record.pid, timeout=FAILED_START_STOP_TIMEOUT)
            reap(record.pid)
            logger.info("Stopped %s (pid %d) after a failed start", component, record.pid)
        state.save(self.state_path)

    # ---- down and status --------------------------------------------------------------------

    def down(
        self, report: Callable[[str, str], None] | None = None, on_wait: Callable[[], None] | None = None
    ) -> list[tuple[str, str]]:
        """Stop every recorded process that is still ours, controller manager first; return (component, outcome)."""
        if not self.state_dir.is_dir():
            return []
        with self.exclusive(on_wait):
            return self._down(report)

    def _down(self, report: Callable[[str, str], None] | None) -> list[tuple[str, str]]:
        state = self.load_state()
        outcomes = []
        for component in reversed(COMPONENTS):
            record = state.processes.pop(component, None)
            if record is None:
                continue
            if record.is_running():
                stop_process(record.pid)
                outcome = f"stopped (pid {record.pid})"
            elif is_alive(record.pid):
                outcome = f"not running (pid {record.pid} now belongs to another process, left alone)"
            else:
                outcome = "not running"
            reap(record.pid)
            outcomes.append((component, outcome))
            if report is not None:
                report(component, outcome)
        self.ready_path.unlink(missing_ok=True)
        if self.state_path.exists():
            state.save(self.state_path)
        return outcomes

    def status(self) -> list[ComponentStatus]:
        state = self.load_state()
        rows = []
        for component in COMPONENTS:
            record = state.processes.get(component)
            if component == ETCD and state.external_etcd is not None and record is None:
                rows.append(ComponentStatus(ETCD, None, "external", ",".join(state.external_etcd), "-"))
                continue
            # A stopped controller manager shows the file that the next up starts it with.
            config = (state.controller_manager_config or "-") if component == CONTROLLER_MANAGER else "-"
            if record is None:
                rows.append(ComponentStatus(component, None, "stopped", "-", str(self.log_path(component)), config))
                continue
            if component == CONTROLLER_MANAGER and state.controller_manager_config and record.is_running():
                config += _config_change(state.controller_manager_config, state.controller_manager_config_digest)
            rows.append(
                ComponentStatus(
                    component, record.pid, self._status_of(component, record, state), record.endpoint, record.log,
                    config,
                )
            )  # fmt: skip
        return rows

    def _status_of(self, component: str, record: ProcessRecord, state: ControlPlaneState) -> str:
        if not record.is_running():
            return "stopped"
        if component == API_SERVER:
            try:
                ok = httpx.get(record.endpoint + "/readyz", timeout=2.0).status_code == 200
            except httpx.HTTPError:
                ok = False
            return "ready" if ok else "not ready"
        if component == CONTROLLER_MANAGER:
            # The manager removes its ready file while the API server at its --server URL (stored as its
            # endpoint) is not ready. Another server could be ready at that URL, so the URL is compared here.
            if record.endpoint != state.server_url:
                return "not ready"
            return "ready" if self._controller_manager_ready(record) else "not ready"
        return "running"
