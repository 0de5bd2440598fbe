"""Fixtures for the Slurm cluster manager's tests.

Two real single-node Slurm clusters run side by side for the session (alpha with slurmrestd on
TCP with JWT, beta with slurmrestd on a unix socket), plus an sshd on a loopback port that lets
the ssh mode reach them. `make_manager(site, mode)` builds a started manager for a cluster in one
of the access modes cli, ssh and rest. Needs root and the packages of scripts/install-slurm.sh
(with openssh-server); the tests that need daemons skip without them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from skyshift_slurm.localcluster import LocalSlurmCluster, pick_free_ports
from skyshift_slurm.manager import SlurmClusterManager

from skyshift_core.cluster_manager import WorkStatus, WorkUnit
from skyshift_core.objects import Job

SBIN_PATH = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
MODES = ("cli", "ssh", "rest")
# Seconds a test waits for a job to reach a state; a deadline, not an expected duration.
DEADLINE = 60.0
POLL_SECONDS = 0.2


def _missing_requirements() -> str | None:
    if os.geteuid() != 0:
        return "needs root to start Slurm daemons"
    for program in ("slurmctld", "slurmd", "slurmrestd", "munged", "sshd", "ssh-keygen"):
        if shutil.which(program, path=SBIN_PATH) is None:
            return f"needs {program}; install it with scripts/install-slurm.sh"
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slurm_cluster: needs real local Slurm clusters (root, Slurm, sshd)")
    config.addinivalue_line("markers", "late: runs after the other Slurm tests, to overlap slow Slurm timers")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = _missing_requirements()
    for item in items:
        if missing and item.get_closest_marker("slurm_cluster"):
            item.add_marker(pytest.mark.skip(reason=missing))
    # Tests marked late check jobs that the session started early (a time limit takes a minute),
    # so they go last and the minute passes while other tests run.
    items.sort(key=lambda item: 1 if item.get_closest_marker("late") else 0)


# ---------------------------------------------------------------------------------------------
# Daemons
# ---------------------------------------------------------------------------------------------


@dataclass
class Sshd:
    port: int
    identity_file: Path
    known_hosts: Path
    process: subprocess.Popen[bytes]
    log: Path


@pytest.fixture(scope="session")
def work_root() -> Iterator[Path]:
    """A 0755 directory that munged and slurmrestd's user can enter (pytest's tmp_path cannot)."""
    path = Path(tempfile.mkdtemp(prefix="skyshift-slurm-manager-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def sites(work_root: Path) -> Iterator[dict[str, LocalSlurmCluster]]:
    """Clusters alpha (8 CPUs, 4 GiB, slurmrestd on TCP) and beta (2 CPUs, 1 GiB, slurmrestd on a
    unix socket). CPUs and memory are declared in slurm.conf, so sleeping jobs fit on any machine."""
    munge_dir = work_root / "munge"
    alpha = LocalSlurmCluster("mgr-alpha", work_root / "alpha", cpus=8, memory_mb=4096, munge_dir=munge_dir)
    beta = LocalSlurmCluster("mgr-beta", work_root / "beta", cpus=2, memory_mb=1024, munge_dir=munge_dir)
    started = []
    try:
        for cluster in (alpha, beta):
            cluster.start()
            started.append(cluster)
        alpha.start_restd_tcp()
        beta.start_restd_unix()
        yield {"alpha": alpha, "beta": beta}
    finally:
        for cluster in started:
            cluster.stop()


@pytest.fixture(scope="session")
def gamma(work_root: Path) -> Iterator[LocalSlurmCluster]:
    """A third, small cluster for tests that stop or reset its controller, with slurmrestd on TCP."""
    cluster = LocalSlurmCluster("mgr-gamma", work_root / "gamma", cpus=1, memory_mb=512, munge_dir=work_root / "munge")
    with cluster:
        cluster.start_restd_tcp()
        yield cluster


@pytest.fixture(scope="session")
def sshd(work_root: Path) -> Iterator[Sshd]:
    """An sshd on a free 127.0.0.1 port with a temporary host key, accepting one generated key for
    root, and a known_hosts file with its host key. It is stopped by PID at the end."""
    directory = work_root / "sshd"
    directory.mkdir()
    host_key = directory / "host_ed25519"
    client_key = directory / "client_ed25519"
    for key in (host_key, client_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (directory / "authorized_keys").write_text(client_key.with_suffix(".pub").read_text())
    (directory / "authorized_keys").chmod(0o600)

    (port,) = pick_free_ports(1)
    host_public = host_key.with_suffix(".pub").read_text().split()
    known_hosts = directory / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_public[0]} {host_public[1]}\n")

    config = directory / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"PidFile {directory / 'sshd.pid'}",
                f"AuthorizedKeysFile {directory / 'authorized_keys'}",
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                # The temporary directory is below /tmp, which StrictModes rejects as world-writable.
                "StrictModes no",
                # Connection sharing opens one session per command on the shared connection.
                "MaxSessions 100",
                "MaxStartups 100",
                "LogLevel ERROR",
                "",
            ]
        )
    )

    # sshd needs its privilege separation directory, which a machine without systemd may lack.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    log = directory / "sshd.log"
    sshd_program = shutil.which("sshd", path=SBIN_PATH)
    assert sshd_program is not None
    with open(log, "ab") as output:
        process = subprocess.Popen(
            [sshd_program, "-D", "-e", "-f", str(config)], stdout=output, stderr=subprocess.STDOUT
        )

    try:
        deadline = time.monotonic() + 10
        while True:
            assert process.poll() is None, f"sshd exited with {process.returncode}: {log.read_text()}"
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, f"sshd did not listen on port {port}: {log.read_text()}"
            time.sleep(0.05)
        yield Sshd(port, client_key, known_hosts, process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def jwt_file(cluster: LocalSlurmCluster, work_root: Path) -> Path:
    """Return a file, readable by root only, with a JWT for root on `cluster`; written once."""
    path = work_root / f"{cluster.name}.jwt"
    if not path.exists():
        path.write_text(cluster.token(lifespan=3600) + "\n")
        path.chmod(0o600)
    return path


@pytest.fixture(scope="session")
def output_root(work_root: Path) -> Path:
    """Parent of every test's output directories; world-writable because jobs submitted through
    beta's unix socket run as slurmrestd's user."""
    path = work_root / "output"
    path.mkdir()
    path.chmod(0o1777)
    return path


# ---------------------------------------------------------------------------------------------
# Managers
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def site_config(
    sites: dict[str, LocalSlurmCluster], sshd: Sshd, output_root: Path, work_root: Path
) -> Callable[..., dict[str, Any]]:
    """Return the spec.config of a site (alpha, beta, or a cluster such as gamma) in an access mode;
    keyword arguments are added to it. rest reaches a cluster on TCP with a JWT when it runs
    slurmrestd there (alpha, gamma) and on its unix socket otherwise (beta)."""

    def config(site: str | LocalSlurmCluster, mode: str, **extra: Any) -> dict[str, Any]:
        cluster = sites[site] if isinstance(site, str) else site
        common: dict[str, Any] = {
            "output_dir": str(output_root / f"{site_name(site)}-{mode}"),
            "restart_backoff_seconds": 0.2,
            "command_timeout_seconds": 20,
        }
        if mode == "cli":
            common.update(interface="cli", slurm_conf=str(cluster.slurm_conf))
        elif mode == "ssh":
            common.update(
                interface="ssh",
                host="127.0.0.1",
                port=sshd.port,
                user="root",
                identity_file=str(sshd.identity_file),
                known_hosts=str(sshd.known_hosts),
                slurm_conf=str(cluster.slurm_conf),
            )
        elif cluster.restd_url is not None:
            common.update(
                interface="rest", url=cluster.restd_url, token_file=str(jwt_file(cluster, work_root)), user_name="root"
            )
        else:
            common.update(interface="rest", url=f"unix://{cluster.restd_socket}")
        return {**common, **extra}

    return config


@pytest.fixture
async def make_manager(
    site_config: Callable[..., dict[str, Any]], time_limit_work
) -> AsyncIterator[Callable[..., Awaitable[SlurmClusterManager]]]:
    """Build and start managers; each is stopped after the test. `name` defaults to `<site>-<mode>`."""
    managers: list[SlurmClusterManager] = []

    async def make(
        site: str | LocalSlurmCluster, mode: str, name: str | None = None, **extra: Any
    ) -> SlurmClusterManager:
        config = SlurmClusterManager.validate_config(site_config(site, mode, **extra))
        manager = SlurmClusterManager(name or f"{site_name(site)}-{mode}", config)
        await manager.start()
        managers.append(manager)
        return manager

    yield make
    for manager in managers:
        await manager.stop()


def site_name(site: str | LocalSlurmCluster) -> str:
    """Return alpha for "alpha" and for the cluster mgr-alpha."""
    return site if isinstance(site, str) else site.name.removeprefix("mgr-")


def new_job(
    name: str,
    run: str,
    *,
    replicas: int = 1,
    restart_policy: str = "Never",
    resources: dict[str, Any] | None = None,
    envs: dict[str, str] | None = None,
    backend: dict[str, Any] | None = None,
    image: str | None = None,
) -> Job:
    """A Job with a fresh uid, so every test's work keys are its own."""
    spec: dict[str, Any] = {
        "replicas": replicas,
        "run": run,
        "restart_policy": restart_policy,
        "resources": resources if resources is not None else {"cpus": 1, "memory": "64Mi"},
        "envs": envs or {},
    }
    if backend is not None:
        spec["backend"] = {"slurm": backend}
    if image is not None:
        spec["image"] = image
    return Job.model_validate(
        {"metadata": {"name": name, "namespace": "default", "uid": str(uuid.uuid4())}, "spec": spec}
    )


@pytest.fixture
def make_job() -> Callable[..., Job]:
    return new_job


@pytest.fixture
def make_unit() -> Callable[..., WorkUnit]:
    def make(job: Job, cluster: str, indices: tuple[int, ...] | None = None, generation: int = 1) -> WorkUnit:
        indices = indices if indices is not None else tuple(range(job.spec.replicas))
        return WorkUnit(
            job=job, cluster=cluster, replica_indices=indices, total_replicas=job.spec.replicas, generation=generation
        )

    return make


async def wait_for_status(
    manager: SlurmClusterManager,
    key: str,
    condition: Callable[[WorkStatus], bool],
    deadline: float = DEADLINE,
) -> WorkStatus:
    """Poll statuses() until the work's status meets `condition`; fail with the last status at the deadline."""
    end = time.monotonic() + deadline
    status = None
    while time.monotonic() < end:
        status = (await manager.statuses()).get(key)
        if status is not None and condition(status):
            return status
        await asyncio.sleep(POLL_SECONDS)
    pytest.fail(
        f"work {key} on {manager.name} did not reach the expected state within {deadline:.0f} s; last: {status}"
    )


@pytest.fixture
def wait_for() -> Callable[..., Awaitable[WorkStatus]]:
    return wait_for_status


def all_ended(status: WorkStatus) -> bool:
    return bool(status.tasks) and all(task.state in ("Succeeded", "Failed") for task in status.tasks.values())


@pytest.fixture
def ended() -> Callable[[WorkStatus], bool]:
    return all_ended


# ---------------------------------------------------------------------------------------------
# Work started early
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def time_limit_work(site_config: Callable[..., dict[str, Any]]) -> dict[str, WorkUnit]:
    """Jobs with a one-minute time limit (set in spec.backend.slurm), submitted on alpha in every
    mode when the first manager test starts. The late test checks that they ended with TIMEOUT."""

    async def submit_all() -> dict[str, WorkUnit]:
        units = {}
        for mode in MODES:
            manager = SlurmClusterManager(
                f"alpha-{mode}", SlurmClusterManager.validate_config(site_config("alpha", mode))
            )
            await manager.start()
            try:
                job = new_job("time-limit", "echo started; sleep 600", backend={"time_limit": "1"})
                unit = WorkUnit(job=job, cluster=manager.name, replica_indices=(0,), total_replicas=1, generation=1)
                await manager.submit(unit)
                units[mode] = unit
            finally:
                await manager.stop()
        return units

    return asyncio.run(submit_all())
