"""The controller manager process behind `skyshift controller-manager`.

It waits for the API server, checks its configuration (scheduler profiles naming plugins that are
not installed stop it at start-up with the list of installed ones), then campaigns for leadership
through a lease. While it leads it runs the scheduler, the job status controller and the skylet
manager, all writing through a client fenced by the lease; when it stops leading they are
cancelled before another instance can take over.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import yaml
from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app

from skyshift_core import manifest_yaml
from skyshift_core.client import AsyncSkyShiftClient
from skyshift_core.controllers.jobstatus import JobStatusReconciler
from skyshift_core.controllers.scheduler import DEFAULT_GRACE_PERIOD, SchedulerReconciler
from skyshift_core.controllers.skylet import DEFAULT_FAST_POLL_INTERVAL, DEFAULT_FAST_POLL_WINDOW, DEFAULT_POLL_INTERVAL
from skyshift_core.controllers.skylets import SkyletManager
from skyshift_core.errors import PluginError, SkyShiftError, UnauthorizedError, UnavailableError
from skyshift_core.objects import Cluster, FilterPolicy, Job
from skyshift_core.plugins import default_catalog, load_driver
from skyshift_core.runtime.controller import Controller, MappedInformer
from skyshift_core.runtime.informer import Informer
from skyshift_core.runtime.leader import LeaderElector
from skyshift_core.scheduler.profile import PLUGIN_GROUP, Profile, build_profiles, default_profile_specs

logger = logging.getLogger(__name__)

DEFAULT_HEALTH_INTERVAL = 10.0
INITIAL_RETRY_DELAY = 0.2
RETRY_FACTOR = 2.0
MAX_RETRY_DELAY = 5.0
# While waiting for the API server, the cause is logged on the first attempt, on every Nth after
# it and whenever it changes. With the delays above, attempt 10 starts about 26 s after attempt 1,
# and later logs come about every 50 s (plus the time the failed probes take).
WAITING_LOG_EVERY = 10
PROBE_TIMEOUT = 5.0
# The user that `skyshift up` and `skyshift bootstrap` create for the controller manager, as
# skyshift_core.auth.rbac names it. It is not imported from there, because that module imports
# the etcd client, which this process does not need.
CONTROLLER_MANAGER_USER = "skyshift-controller-manager"
# The metrics listener (--metrics-port) binds this address unless --metrics-host sets another,
# and serves this path only.
METRICS_HOST = "127.0.0.1"
METRICS_PATH = "/metrics"
LEASE_NAME = "controller-manager"
# Jobs the scheduler decides on at once. A decision waits mostly for its status write, so several
# in flight keep the API server and etcd busy. On a 2-CPU machine benchmarks/scheduler.py placed
# 575-600 Jobs per second with 8 and 566 with 4.
DEFAULT_SCHEDULER_WORKERS = 8
CONTROLLERS = ("scheduler", "job-status", "skylets")
# The sections of a config file that hold settings, and the settings each one accepts.
SECTION_KEYS = {
    "scheduler": ("profiles", "grace_period", "workers"),
    "skylet": ("poll_interval", "fast_poll_interval", "fast_poll_window"),
    "leader_election": ("ttl", "identity", "lease_name"),
}


@dataclass
class ControllerManagerConfig:
    """Settings from the controller manager's YAML file (`--config`); every field is optional.

    scheduler:
      profiles: [{name: default, divide: spread}]   # see skyshift_core.scheduler.profile
      grace_period: 300       # seconds a cluster may be unready before its replicas move
      workers: 8              # Jobs decided on at once
    skylet:
      poll_interval: 1.0      # seconds between a skylet's cycles
      fast_poll_interval: 0.2 # seconds between status reads while work changes state
      fast_poll_window: 10    # seconds that fast polling lasts after the last change
    leader_election:
      ttl: 15                 # seconds; a dead leader is replaced within about this long
      identity: host-a        # default: hostname and pid
      lease_name: controller-manager
    controllers: [scheduler, job-status, skylets]   # the default: all of them
    """

    # Controllers this process runs while it leads; running subsets in separate processes
    # (each with its own lease name) spreads the work.
    controllers: tuple[str, ...] = CONTROLLERS
    lease_name: str = LEASE_NAME
    profiles: list[dict[str, Any]] | None = None
    grace_period: float = DEFAULT_GRACE_PERIOD
    scheduler_workers: int = DEFAULT_SCHEDULER_WORKERS
    poll_interval: float = DEFAULT_POLL_INTERVAL
    fast_poll_interval: float = DEFAULT_FAST_POLL_INTERVAL
    fast_poll_window: float = DEFAULT_FAST_POLL_WINDOW
    lease_ttl: int = 15
    identity: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None) -> "ControllerManagerConfig":
        if path is None:
            return cls()
        try:
            text = Path(path).read_text()
        except OSError as error:
            raise ValueError(f"cannot read controller manager config {path}: {error}") from error
        try:
            data = manifest_yaml.load(text, str(path)) or {}
        except yaml.YAMLError as error:
            raise ValueError(f"invalid YAML in controller manager config {path}: {error}") from error
        if not isinstance(data, dict):
            raise ValueError(f"controller manager config {path} must be a mapping")
        sections = ("controllers", *SECTION_KEYS)
        unknown = sorted(set(data) - set(sections))
        if unknown:
            raise ValueError(f"unknown section(s) {', '.join(unknown)} in {path}; valid: {', '.join(sections)}")
        controllers = data.get("controllers") or CONTROLLERS
        if not isinstance(controllers, (list, tuple)) or not all(isinstance(item, str) for item in controllers):
            raise ValueError(
                f"invalid controllers {controllers!r} in {path}: expected a list of names from {', '.join(CONTROLLERS)}"
            )
        controllers = tuple(controllers)
        invalid = sorted(set(controllers) - set(CONTROLLERS))
        if invalid:
            raise ValueError(f"unknown controller(s) {', '.join(invalid)} in {path}; valid: {', '.join(CONTROLLERS)}")
        scheduler, skylet, election = (_section(data, name, path) for name in SECTION_KEYS)
        profiles = scheduler.get("profiles")
        if profiles is not None and not isinstance(profiles, list):
            raise ValueError(
                f"invalid scheduler.profiles in {path}: expected a list of profiles such as "
                f"[{{name: default, divide: spread}}], got {profiles!r}"
            )
        return cls(
            controllers=controllers,
            lease_name=str(election.get("lease_name", LEASE_NAME)),
            profiles=profiles,
            grace_period=float(scheduler.get("grace_period", DEFAULT_GRACE_PERIOD)),
            scheduler_workers=_count(scheduler, "scheduler", "workers", DEFAULT_SCHEDULER_WORKERS, path),
            poll_interval=_seconds(skylet, "poll_interval", DEFAULT_POLL_INTERVAL, path),
            fast_poll_interval=_seconds(skylet, "fast_poll_interval", DEFAULT_FAST_POLL_INTERVAL, path),
            fast_poll_window=_seconds(skylet, "fast_poll_window", DEFAULT_FAST_POLL_WINDOW, path),
            lease_ttl=int(election.get("ttl", 15)),
            identity=election.get("identity"),
        )


def _section(data: dict[str, Any], name: str, path: Path) -> dict[str, Any]:
    """Return section `name` of a config file as a mapping ({} when absent); reject unknown keys in it."""
    section = data.get(name) or {}
    if not isinstance(section, dict):
        raise ValueError(f"invalid section {name} in {path}: expected a mapping of settings, got {section!r}")
    valid = SECTION_KEYS[name]
    unknown = sorted(set(section) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown setting(s) {', '.join(unknown)} in section {name} of {path}; valid: {', '.join(valid)}"
        )
    return section


def check_config(path: Path) -> ControllerManagerConfig:
    """Load a controller manager config file and build its scheduler profiles with the installed plugins.

    This is what the controller manager checks at start-up. ValueError names the file and the problem.
    """
    config = ControllerManagerConfig.load(path)
    try:
        load_profiles(config)
    except PluginError as error:
        raise ValueError(f"invalid scheduler profiles in {path}: {error.message}") from error
    return config


def _count(section: dict[str, Any], section_name: str, key: str, default: int, path: Path) -> int:
    """Return `section[key]` as an integer of at least 1, or `default` when it is absent."""
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"invalid {section_name}.{key} {value!r} in {path}: expected an integer of at least 1")
    return value


def _seconds(section: dict[str, Any], key: str, default: float, path: Path) -> float:
    """Return `section[key]` as a positive number of seconds, or `default` when it is absent."""
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"invalid skylet.{key} {value!r} in {path}: expected a number of seconds greater than 0")
    return float(value)


def load_profiles(config: ControllerManagerConfig) -> dict[str, Profile]:
    """Build the scheduler profiles; PluginError (naming the installed plugins) when one cannot load."""
    installed = {entry.name for entry in default_catalog().entries(PLUGIN_GROUP)}
    specs = config.profiles if config.profiles is not None else default_profile_specs(installed)
    if not specs:
        logger.warning(
            "No scheduling policy plugin is installed, so Jobs stay Pending; install one, for example: "
            "pip install skyshift-scheduler-spread"
        )
    return build_profiles(specs, lambda name: load_driver(PLUGIN_GROUP, name))


class ControllerManager:
    """Runs until `stop()`; `ready_file`, when set, holds this process's pid while it is connected and ready."""

    def __init__(
        self,
        server_url: str,
        *,
        ready_file: Path | None = None,
        health_interval: float = DEFAULT_HEALTH_INTERVAL,
        token: str | None = None,
        config: ControllerManagerConfig | None = None,
        ca_file: str | None = None,
        freeze_after_sync: bool = False,
        token_source: str | None = None,
    ):
        self.server_url = server_url
        # Whether to call gc.freeze once the caches are filled. Only a process that runs nothing
        # but this manager (`skyshift controller-manager`) should, because it affects the process.
        self.freeze_after_sync = freeze_after_sync
        self.ready_file = ready_file
        self.health_interval = health_interval
        self.token = token
        # Where the token came from, such as "--token-file /etc/skyshift/cm.token", for error messages.
        self.token_source = token_source
        # CA bundle that verifies an https API server's certificate; None trusts the system's CAs.
        self.ca_file = ca_file
        self.config = config or ControllerManagerConfig()
        self.profiles: dict[str, Profile] = {}
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Ask `run` to return, even before it has started; call it from the event loop's thread."""
        self._stopping.set()

    async def _wait_for_api(self, client: AsyncSkyShiftClient) -> bool:
        """Probe with exponential backoff until the API server is ready and accepts this process's
        token; return False if stopped first."""
        delay = INITIAL_RETRY_DELAY
        attempts = 0
        logged_cause: str | None = None
        while not self._stopping.is_set():
            attempts += 1
            problem = await self._probe(client)
            if problem is None:
                logger.info("API server at %s is ready after %d attempt(s)", self.server_url, attempts)
                return True
            cause = problem.message
            if attempts == 1 or attempts % WAITING_LOG_EVERY == 0 or cause != logged_cause:
                self._log_problem(problem, f"attempt {attempts}; retrying with backoff up to {MAX_RETRY_DELAY:g} s")
                logged_cause = cause
            # asyncio.timeout keeps a cancellation that arrives with the stop, which wait_for drops on 3.11.
            try:
                async with asyncio.timeout(delay):
                    await self._stopping.wait()
            except TimeoutError:
                pass
            delay = min(delay * RETRY_FACTOR, MAX_RETRY_DELAY)
        return False

    async def _probe(self, client: AsyncSkyShiftClient) -> SkyShiftError | None:
        """Return None when /readyz returns 200 and the API server accepts this process's token, else the error.

        /readyz needs no token, so the token is checked with `GET /api/v1/whoami`, which every
        authenticated user may call.
        """
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                await client.check_ready()
                await client.call("GET", "/api/v1/whoami")
        except TimeoutError:
            return UnavailableError(f"the API server did not respond within {PROBE_TIMEOUT:g} s")
        except SkyShiftError as error:
            return error
        return None

    def _log_problem(self, problem: SkyShiftError, next_step: str) -> None:
        """Log why this process is not ready: an error for a rejected token, a warning otherwise."""
        if not isinstance(problem, UnauthorizedError):
            logger.warning("API server at %s is not ready (%s): %s", self.server_url, next_step, problem.message)
            return
        user = _token_user(self.token) or CONTROLLER_MANAGER_USER
        # The server's 401 messages read "reason; advice for people", and advice such as "log in again
        # with: skyshift login" does not fit a process that runs with a service token, so only the reason is kept.
        reason = problem.message.partition("; ")[0]
        if self.token is None:
            logger.error(
                "API server at %s rejects this controller manager with 401 because it sends no token (%s): %s. "
                "Create a service token with 'skyshift token create --user %s', save it in a file and restart "
                "with --token-file FILE. Not reporting ready until the token is accepted",
                self.server_url, next_step, reason, user,
            )  # fmt: skip
            return
        logger.error(
            "API server at %s rejects this controller manager's token from %s with 401 (%s): %s. A rejected token "
            "will not become valid again, so create a new service token with 'skyshift token create --user %s', "
            "write it to the file that --token-file reads and restart the controller manager. Not reporting "
            "ready until the token is accepted",
            self.server_url, self.token_source or "--token", next_step, reason, user,
        )  # fmt: skip

    def _write_ready_file(self) -> None:
        if self.ready_file is None:
            return
        temporary = self.ready_file.with_name(self.ready_file.name + ".tmp")
        temporary.write_text(f"{os.getpid()}\n")
        os.replace(temporary, self.ready_file)

    async def run(self) -> None:
        # Configuration errors stop the process before it does anything else.
        self.profiles = load_profiles(self.config)
        logger.info("Scheduler profiles: %s", ", ".join(sorted(self.profiles)))
        client = AsyncSkyShiftClient(self.server_url, timeout=PROBE_TIMEOUT * 6, token=self.token, ca_file=self.ca_file)
        elector = LeaderElector(client, self.config.lease_name, self.config.identity, ttl=self.config.lease_ttl)
        health: asyncio.Task[None] | None = None
        try:
            logger.info("Controller manager starting; waiting for the API server at %s", self.server_url)
            if not await self._wait_for_api(client):
                return
            self._write_ready_file()
            health = asyncio.create_task(self._check_health(client))
            logger.info("Controller manager ready; campaigning for leadership as %s", elector.identity)
            while not self._stopping.is_set():
                campaign = asyncio.ensure_future(elector.run(lambda: self._lead(elector)))
                stopping = asyncio.ensure_future(self._stopping.wait())
                done, _ = await asyncio.wait({campaign, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if stopping in done:
                    campaign.cancel()
                    await asyncio.gather(campaign, return_exceptions=True)
                    break
                stopping.cancel()
                error = campaign.exception()
                if error is not None:
                    logger.error("Leading ended with an error, campaigning again: %s", error)
                else:
                    logger.warning("Lost leadership; controllers stopped, campaigning again")
        finally:
            if health is not None:
                health.cancel()
                await asyncio.gather(health, return_exceptions=True)
            if self.ready_file is not None:
                self.ready_file.unlink(missing_ok=True)
            await client.aclose()
            logger.info("Controller manager stopped")

    async def _check_health(self, client: AsyncSkyShiftClient) -> None:
        """Probe every `health_interval` seconds, keeping the ready file only while the API server is
        ready and accepts this process's token.

        `skyshift status` reads the ready file, so it shows the manager "not ready" while the API
        server or its etcd is unreachable or the token is rejected, and "ready" again once both respond.
        """
        ready = True
        while True:
            await asyncio.sleep(self.health_interval)
            problem = await self._probe(client)
            if (problem is None) == ready:
                continue
            ready = problem is None
            if ready:
                self._write_ready_file()
                logger.info("API server at %s is ready again", self.server_url)
            else:
                if self.ready_file is not None:
                    self.ready_file.unlink(missing_ok=True)
                self._log_problem(problem, "this controller manager reports not ready until it is ready again")

    async def _lead(self, elector: LeaderElector) -> None:
        """Run every controller until cancelled; every write is fenced by the lease."""
        logger.info("Leading as %s: starting controllers", elector.identity)
        client = elector.fenced_client()
        jobs = Informer(client, Job)
        clusters = Informer(client, Cluster)
        policies = Informer(client, FilterPolicy)
        enabled = set(self.config.controllers)
        runners = []
        if "scheduler" in enabled:
            scheduler = SchedulerReconciler(
                client, jobs, clusters, policies, self.profiles, grace_period=self.config.grace_period
            )
            sources = [
                jobs,
                MappedInformer(clusters, scheduler.requests_for_cluster),
                MappedInformer(policies, scheduler.requests_for_policy),
            ]
            runners.append(Controller("scheduler", scheduler, sources, workers=self.config.scheduler_workers).run())
        if "job-status" in enabled:
            runners.append(Controller("job-status", JobStatusReconciler(client, jobs), [jobs], workers=2).run())
        if "skylets" in enabled:
            skylets = SkyletManager(
                client, clusters, jobs, poll_interval=self.config.poll_interval,
                fast_poll_interval=self.config.fast_poll_interval, fast_poll_window=self.config.fast_poll_window,
            )  # fmt: skip
            runners.append(skylets.run())
        informers = [jobs, clusters, policies]
        for informer in informers:
            informer.start()
        if self.freeze_after_sync:
            runners.append(_freeze_after_sync(informers))
        try:
            await asyncio.gather(*runners)
        finally:
            for informer in informers:
                await informer.stop()
            await client.aclose()
            if self.freeze_after_sync:
                # This term's caches are in reference cycles, which only a collection frees, so
                # they must not stay exempt once the term is over.
                gc.unfreeze()


def metrics_app(registry: CollectorRegistry = REGISTRY) -> Callable:
    """Return a WSGI app that serves the registry's metrics at /metrics and 404 at every other path,
    so an HTTP probe pointed at a wrong path fails rather than passing."""
    serve_metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != METRICS_PATH:
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [f"404 Not Found: this listener serves only {METRICS_PATH}\n".encode()]
        return serve_metrics(environ, start_response)

    return app


class _MetricsServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietRequestHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing: Prometheus scrapes every few seconds, and wsgiref would print each to stderr."""


def start_metrics_server(port: int, host: str = METRICS_HOST) -> WSGIServer:
    """Serve Prometheus metrics at http://HOST:PORT/metrics from a daemon thread and return the server.

    Raises OSError when the port cannot be bound, such as EADDRINUSE when another process listens on it.
    """
    server = make_server(host, port, metrics_app(), server_class=_MetricsServer, handler_class=_QuietRequestHandler)
    threading.Thread(target=server.serve_forever, name=f"metrics-{port}", daemon=True).start()
    return server


def metrics_port_message(port: int, error: OSError, host: str = METRICS_HOST) -> str:
    """Return the one-line error for a --metrics-port that cannot be bound."""
    where = f"cannot serve metrics on {host}:{port} (--metrics-host {host} --metrics-port {port})"
    if error.errno == errno.EADDRINUSE:
        return (
            f"{where}: the port is already in use by another process; "
            "pass another --metrics-port or stop that process"
        )
    return f"{where}: {error.strerror or error}; pass another --metrics-port"


def _token_user(token: str | None) -> str | None:
    """Return the user that a token names (tokens read `sks_<user>.<id>.<secret>`), or None."""
    if token is None or not token.startswith("sks_"):
        return None
    return token.removeprefix("sks_").partition(".")[0] or None


# Thresholds of Python's garbage collector in the controller manager. The informer caches keep
# about 23 tracked objects per placed Job (counted with gc.get_objects), and every collection of
# the oldest generation walks all of them. With the default thresholds (700, 10, 10), benchmarks/scheduler.py measured 2 to 3 s of
# collections while placing 10,000 Jobs. With these it measured about 0.6 s, at the same peak memory.
GC_THRESHOLDS = (20_000, 20, 20)


async def _freeze_after_sync(informers: list[Informer]) -> None:
    """Exempt what exists once the caches are filled from later collections (`gc.freeze`).

    Objects created at startup (modules, plugins, the first listing) are then not walked again
    while this leadership term lasts. Reference counting still frees them when they are dropped.
    Objects in reference cycles, such as the term's informers, wait for `_lead` to unfreeze them
    when the term ends.
    """
    for informer in informers:
        await informer.wait_for_sync()
    gc.collect()
    gc.freeze()
    logger.debug("Caches filled; %d objects exempted from garbage collection", gc.get_freeze_count())


def run_controller_manager(
    server_url: str,
    *,
    ready_file: Path | None = None,
    health_interval: float = DEFAULT_HEALTH_INTERVAL,
    config_path: Path | None = None,
    token: str | None = None,
    metrics_port: int | None = None,
    ca_file: str | None = None,
    token_source: str | None = None,
    metrics_host: str = METRICS_HOST,
) -> None:
    """Run a ControllerManager in the foreground until SIGTERM or SIGINT.

    Exits with status 1 and one `Error:` line on a configuration error or when the metrics port
    cannot be bound.
    """
    try:
        # Checking the profiles here too puts the file's name into a profile error.
        config = check_config(config_path) if config_path is not None else ControllerManagerConfig()
    except ValueError as error:
        raise SystemExit(f"Error: {error}") from error
    manager = ControllerManager(
        server_url, ready_file=ready_file, health_interval=health_interval, config=config, token=token, ca_file=ca_file,
        freeze_after_sync=True, token_source=token_source,
    )
    if metrics_port is not None:
        try:
            start_metrics_server(metrics_port, metrics_host)
        except OSError as error:
            raise SystemExit(f"Error: {metrics_port_message(metrics_port, error, metrics_host)}") from error
        logger.info("Serving metrics on http://%s:%d/metrics", metrics_host, metrics_port)

    gc.set_threshold(*GC_THRESHOLDS)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, manager.stop)
        await manager.run()

    try:
        asyncio.run(main())
    except PluginError as error:
        raise SystemExit(f"Error: {error}") from error
