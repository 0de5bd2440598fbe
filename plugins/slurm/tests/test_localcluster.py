"""Tests of LocalSlurmCluster against real Slurm daemons: two clusters side by side on 127.0.0.1.

Needs root and the packages of scripts/install-slurm.sh; the Slurm tests skip without them.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import skyshift_slurm
from skyshift_slurm.localcluster import (
    OPENAPI_VERSION,
    RESTD_USER,
    DaemonProcess,
    LocalClusterError,
    LocalSlurmCluster,
    SharedMunged,
    _user_can_read,
)
from skyshift_core.objects import Namespace

SBIN_PATH = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
JOB_DEADLINE = 30.0
TERMINAL_JOB_STATES = {
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

requires_slurm = pytest.mark.skipif(
    shutil.which("slurmctld", path=SBIN_PATH) is None or os.geteuid() != 0,
    reason="needs root and slurmctld; install Slurm with scripts/install-slurm.sh",
)


# ------------------------------------------------------------------------------------------
# Fixtures and helpers
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def work_dir() -> Iterator[Path]:
    """A temporary directory that slurmrestd (user slurmrest) and munged (user munge) can enter.

    pytest's own tmp_path is mode 0700 under /tmp/pytest-of-root, which those users cannot
    search, so this uses a 0755 directory instead.
    """
    path = Path(tempfile.mkdtemp(prefix="skyshift-slurm-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def munge_dir(work_dir: Path) -> Path:
    """A munged directory private to this test run, so that a user's own clusters are untouched."""
    return work_dir / "munge"


@pytest.fixture(scope="session")
def clusters(work_dir: Path, munge_dir: Path) -> Iterator[dict[str, LocalSlurmCluster]]:
    """Two clusters, alpha and beta, running side by side for the whole session."""
    alpha = LocalSlurmCluster("skyshift-alpha", work_dir / "alpha", cpus=2, memory_mb=1024, munge_dir=munge_dir)
    beta = LocalSlurmCluster("skyshift-beta", work_dir / "beta", cpus=1, memory_mb=512, munge_dir=munge_dir)
    started: list[LocalSlurmCluster] = []
    recorded: list[DaemonProcess] = []
    try:
        for cluster in (alpha, beta):
            cluster.start()
            started.append(cluster)
        yield {"alpha": alpha, "beta": beta}
    finally:
        for cluster in started:
            recorded += cluster.processes.values()
            cluster.stop()

    # Teardown checks: nothing that the clusters started may outlive stop().
    munged = SharedMunged(munge_dir)
    leftovers = [f"{process.program} (pid {process.pid})" for process in recorded if process.is_alive()]
    assert not leftovers, f"processes left running after stop(): {leftovers}"
    assert not munged.is_running(), "munged still runs after its last cluster stopped"


def wait_for_job_end(cluster: LocalSlurmCluster, job_id: str) -> dict[str, str]:
    """Poll `scontrol show job` until the job reaches a terminal state; return its fields."""
    deadline = time.monotonic() + JOB_DEADLINE
    while True:
        fields = show_job(cluster, job_id)
        if fields.get("JobState") in TERMINAL_JOB_STATES:
            return fields
        assert time.monotonic() < deadline, (
            f"job {job_id} on {cluster.name} did not end within {JOB_DEADLINE:.0f} s: {fields}"
        )
        time.sleep(0.1)


def show_job(cluster: LocalSlurmCluster, job_id: str) -> dict[str, str]:
    output = cluster.run(["scontrol", "-o", "show", "job", job_id]).stdout
    return dict(field.split("=", 1) for field in output.split() if "=" in field)


def cluster_name_in_config(cluster: LocalSlurmCluster) -> str | None:
    config = cluster.run(["scontrol", "show", "config"]).stdout
    match = re.search(r"^ClusterName\s*=\s*(\S+)", config, re.MULTILINE)
    return match.group(1) if match else None


def queued_job_names(cluster: LocalSlurmCluster) -> list[str]:
    return cluster.run(["squeue", "-h", "-o", "%j"]).stdout.split()


def listening_addresses(port: int) -> set[str]:
    """Return the local IPv4 addresses with a TCP socket listening on `port`, from /proc/net/tcp."""
    addresses = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address_hex, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:
            # /proc/net/tcp prints the address as a little-endian 32-bit hex number.
            addresses.add(socket.inet_ntoa(bytes.fromhex(address_hex)[::-1]))
    return addresses


def http_get_unix(socket_path: Path, path: str) -> tuple[int, bytes]:
    """Send GET `path` over a unix socket and return the status code and the body."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(10)
        client.connect(str(socket_path))
        client.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        response = b""
        while chunk := client.recv(65536):
            response += chunk
    head, _, rest = response.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    # slurmrestd 22.05 writes a stray "Connection: Close" line after the body, so read exactly
    # Content-Length bytes.
    length = int(headers.get("Content-Length", len(rest)))
    return int(status_line.split()[1]), rest[:length]


def http_status_as_user(user: str, socket_path: Path, path: str) -> int:
    """Return the HTTP status of GET `path` over a unix socket, sent by a child running as `user`."""
    account = pwd.getpwnam(user)
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked child
        status = 0
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(account.pw_gid)
            os.setuid(account.pw_uid)
            status, _ = http_get_unix(socket_path, path)
        finally:
            os.write(write_end, str(status).encode())
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as result:
        status_text = result.read()
    os.waitpid(child, 0)
    return int(status_text)


def read_start_ticks(pid: int) -> int | None:
    """Return field 22 of /proc/PID/stat (start time in clock ticks), or None if PID is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[19])


def is_process_running(pid: int, start_ticks: int) -> bool:
    """Return True if the process that started at `start_ticks` still exists and is not a zombie."""
    if read_start_ticks(pid) != start_ticks:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2 :].split()[0] not in ("Z", "X")


def cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m skyshift_slurm.localcluster` in a new process."""
    environment = dict(os.environ)
    package_parent = str(Path(skyshift_slurm.__file__).resolve().parent.parent)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, environment.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "skyshift_slurm.localcluster", *arguments],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# ------------------------------------------------------------------------------------------
# Tests without daemons
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cpus", "memory_mb"),
    [
        pytest.param("Alpha", None, None, id="uppercase-name"),
        pytest.param("1alpha", None, None, id="name-starts-with-digit"),
        pytest.param("al_pha", None, None, id="underscore-in-name"),
        pytest.param("a" * 33, None, None, id="name-too-long"),
        pytest.param("alpha", 0, None, id="zero-cpus"),
        pytest.param("alpha", None, 0, id="zero-memory"),
    ],
)
def test_constructor_rejects_invalid_arguments(
    name: str, cpus: int | None, memory_mb: int | None, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="Invalid"):
        LocalSlurmCluster(name, tmp_path, cpus=cpus, memory_mb=memory_mb)


def test_defaults_fit_the_machine(tmp_path: Path) -> None:
    cluster = LocalSlurmCluster("alpha", tmp_path)
    total_mb = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    assert cluster.cpus == len(os.sched_getaffinity(0))
    assert 0 < cluster.memory_mb < total_mb


# ------------------------------------------------------------------------------------------
# Tests with two running clusters
# ------------------------------------------------------------------------------------------


@requires_slurm
@pytest.mark.parametrize("key", ["alpha", "beta"])
def test_node_is_idle(clusters: dict[str, LocalSlurmCluster], key: str) -> None:
    cluster = clusters[key]
    sinfo = cluster.run(["sinfo", "-h", "-n", cluster.node_name, "-o", "%T %c %m"]).stdout.split()
    assert cluster.node_state() == "IDLE"
    assert sinfo == ["idle", str(cluster.cpus), str(cluster.memory_mb)]


@requires_slurm
def test_clusters_have_distinct_identities(clusters: dict[str, LocalSlurmCluster]) -> None:
    alpha, beta = clusters["alpha"], clusters["beta"]
    assert cluster_name_in_config(alpha) == "skyshift-alpha"
    assert cluster_name_in_config(beta) == "skyshift-beta"
    assert alpha.node_name != beta.node_name
    ports = {alpha.slurmctld_port, alpha.slurmd_port, beta.slurmctld_port, beta.slurmd_port}
    assert len(ports) == 4


@requires_slurm
@pytest.mark.parametrize("key", ["alpha", "beta"])
def test_daemons_listen_on_loopback_only(clusters: dict[str, LocalSlurmCluster], key: str) -> None:
    cluster = clusters[key]
    assert cluster.slurmctld_port is not None and cluster.slurmd_port is not None
    assert listening_addresses(cluster.slurmctld_port) == {"127.0.0.1"}
    assert listening_addresses(cluster.slurmd_port) == {"127.0.0.1"}


@requires_slurm
@pytest.mark.parametrize("key", ["alpha", "beta"])
def test_sbatch_job_completes_with_output(clusters: dict[str, LocalSlurmCluster], key: str) -> None:
    cluster = clusters[key]
    output_path = cluster.base_dir / "job-%j.out"
    job_id = cluster.run(
        [
            "sbatch",
            "--parsable",
            "-o",
            str(output_path),
            "--wrap",
            "echo cluster=$SLURM_CLUSTER_NAME node=$SLURMD_NODENAME",
        ]
    ).stdout.strip()

    fields = wait_for_job_end(cluster, job_id)

    assert fields["JobState"] == "COMPLETED"
    assert fields["ExitCode"] == "0:0"
    output = Path(str(output_path).replace("%j", job_id)).read_text()
    assert output == f"cluster={cluster.name} node={cluster.node_name}\n"


@requires_slurm
def test_job_on_alpha_is_invisible_on_beta(clusters: dict[str, LocalSlurmCluster]) -> None:
    alpha, beta = clusters["alpha"], clusters["beta"]
    job_name = f"only-on-alpha-{os.getpid()}"
    # A held job stays in the queue until released, so both queues can be read before it could run.
    job_id = alpha.run(
        ["sbatch", "--parsable", "--hold", "-J", job_name, "-o", str(alpha.base_dir / "job-%j.out"), "--wrap", "true"]
    ).stdout.strip()
    try:
        assert job_name in queued_job_names(alpha)
        assert job_name not in queued_job_names(beta)
    finally:
        alpha.run(["scancel", job_id])


@requires_slurm
def test_restd_tcp_ping_with_jwt(clusters: dict[str, LocalSlurmCluster]) -> None:
    cluster = clusters["alpha"]
    url = cluster.start_restd_tcp()
    request = urllib.request.Request(
        f"{url}/slurm/{OPENAPI_VERSION}/ping",
        headers={"X-SLURM-USER-NAME": "root", "X-SLURM-USER-TOKEN": cluster.token(lifespan=60)},
    )

    with urllib.request.urlopen(request, timeout=10) as response:
        status, body = response.status, json.load(response)

    assert url.startswith("http://127.0.0.1:")
    assert status == 200
    assert body["errors"] == []
    assert [ping["ping"] for ping in body["pings"]] == ["UP"]


@requires_slurm
def test_restd_tcp_rejects_missing_token(clusters: dict[str, LocalSlurmCluster]) -> None:
    url = clusters["alpha"].start_restd_tcp()
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(f"{url}/slurm/{OPENAPI_VERSION}/ping", timeout=10)
    assert raised.value.code == 401


@requires_slurm
def test_restd_runs_as_restd_user(clusters: dict[str, LocalSlurmCluster]) -> None:
    cluster = clusters["alpha"]
    cluster.start_restd_tcp()
    process = cluster.processes["slurmrestd-tcp"]
    uid_line = next(
        line for line in Path(f"/proc/{process.pid}/status").read_text().splitlines() if line.startswith("Uid:")
    )
    assert int(uid_line.split()[1]) == pwd.getpwnam(RESTD_USER).pw_uid


@requires_slurm
def test_restd_unix_ping(clusters: dict[str, LocalSlurmCluster]) -> None:
    socket_path = clusters["beta"].start_restd_unix()
    status, body = http_get_unix(socket_path, f"/slurm/{OPENAPI_VERSION}/ping")
    assert status == 200
    assert [ping["ping"] for ping in json.loads(body)["pings"]] == ["UP"]


@requires_slurm
def test_restd_unix_rejects_other_users(clusters: dict[str, LocalSlurmCluster]) -> None:
    # rest_auth/local accepts only root and the user that runs slurmrestd.
    socket_path = clusters["beta"].start_restd_unix()
    assert http_status_as_user(RESTD_USER, socket_path, f"/slurm/{OPENAPI_VERSION}/ping") == 200
    assert http_status_as_user("nobody", socket_path, f"/slurm/{OPENAPI_VERSION}/ping") == 401


@requires_slurm
def test_controller_outage_and_recovery(clusters: dict[str, LocalSlurmCluster]) -> None:
    cluster = clusters["beta"]
    job_name = f"survives-outage-{os.getpid()}"
    job_id = cluster.run(
        ["sbatch", "--parsable", "--hold", "-J", job_name, "-o", str(cluster.base_dir / "job-%j.out"), "--wrap", "true"]
    ).stdout.strip()

    cluster.stop_slurmctld()
    ping_during_outage = cluster.run(["scontrol", "ping"], check=False)
    cluster.start_slurmctld()
    ping_after_restart = cluster.run(["scontrol", "ping"], check=False)
    queue_after_restart = queued_job_names(cluster)
    cluster.run(["scancel", job_id])

    assert "is DOWN" in ping_during_outage.stdout
    assert ping_during_outage.returncode != 0
    assert "is UP" in ping_after_restart.stdout
    assert job_name in queue_after_restart
    assert cluster.is_running()


@requires_slurm
def test_start_rejects_directory_in_use(clusters: dict[str, LocalSlurmCluster]) -> None:
    alpha = clusters["alpha"]
    intruder = LocalSlurmCluster("skyshift-other", alpha.base_dir, munge_dir=alpha.munged.directory)
    with pytest.raises(LocalClusterError, match=r"still runs .*'skyshift-slurm-local down --dir "):
        intruder.start()
    assert alpha.is_running()
    assert alpha.ping()


@requires_slurm
def test_cli_down_stops_every_process(clusters: dict[str, LocalSlurmCluster], work_dir: Path, munge_dir: Path) -> None:
    cluster_dir = work_dir / "cli"
    up = cli(
        "up",
        "--name",
        "skyshift-cli",
        "--dir",
        str(cluster_dir),
        "--cpus",
        "1",
        "--memory",
        "512",
        "--munge-dir",
        str(munge_dir),
        "--restd-tcp",
    )
    assert up.returncode == 0, up.stderr
    processes = [
        DaemonProcess(**{key: value for key, value in process.items() if key != "alive"})
        for process in json.loads(up.stdout)["processes"].values()
    ]

    down = cli("down", "--dir", str(cluster_dir))
    status = cli("status", "--dir", str(cluster_dir))

    assert down.returncode == 0, down.stderr
    assert sorted(process.program for process in processes) == ["slurmctld", "slurmd", "slurmrestd"]
    assert [process.program for process in processes if process.is_alive()] == []
    assert status.returncode == 3
    assert json.loads(status.stdout)["running"] is False
    # The session's clusters still use the shared munged, so `down` must leave it running.
    assert SharedMunged(munge_dir).is_running()
    assert clusters["alpha"].ping()


@requires_slurm
def test_cli_stop_munged_keeps_used_munged(clusters: dict[str, LocalSlurmCluster], munge_dir: Path) -> None:
    result = cli("stop-munged", "--munge-dir", str(munge_dir))
    assert result.returncode == 1
    assert "still has live clients" in result.stderr
    assert SharedMunged(munge_dir).is_running()
    assert clusters["alpha"].ping()


@requires_slurm
def test_munged_stops_with_last_cluster(work_dir: Path) -> None:
    munged = SharedMunged(work_dir / "munge-own")
    first = LocalSlurmCluster("skyshift-first", work_dir / "first", cpus=1, memory_mb=256, munge_dir=munged.directory)
    second = LocalSlurmCluster(
        "skyshift-second", work_dir / "second", cpus=1, memory_mb=256, munge_dir=munged.directory
    )

    with first:
        munged_pid = json.loads((munged.directory / "munged.json").read_text())["pid"]
        with second:
            second_munged_pid = json.loads((munged.directory / "munged.json").read_text())["pid"]
        running_after_second_stopped = munged.is_running()
    running_after_first_stopped = munged.is_running()

    assert second_munged_pid == munged_pid
    assert running_after_second_stopped
    assert not running_after_first_stopped


@requires_slurm
def test_stop_during_outage_ends_running_job(work_dir: Path) -> None:
    cluster = LocalSlurmCluster(
        "skyshift-outage", work_dir / "outage", cpus=1, memory_mb=256, munge_dir=work_dir / "munge-outage"
    )
    pid_file = cluster.base_dir / "job.pid"
    with cluster:
        # exec keeps the shell's PID, so the file names the process that must not outlive stop().
        output_path = cluster.base_dir / "job-%j.out"
        cluster.run(["sbatch", "-o", str(output_path), "--wrap", f"echo $$ > {pid_file}; exec sleep 300"])
        deadline = time.monotonic() + JOB_DEADLINE
        while not (pid_file.is_file() and pid_file.read_text().strip()):
            assert time.monotonic() < deadline, f"job did not write {pid_file} in {JOB_DEADLINE:.0f} s"
            time.sleep(0.1)
        job_pid = int(pid_file.read_text())
        job_start_ticks = read_start_ticks(job_pid)
        cluster.stop_slurmctld()

    assert job_start_ticks is not None
    assert not is_process_running(job_pid, job_start_ticks)
    assert list((cluster.base_dir / "spool").glob(f"{cluster.node_name}_*")) == []


@requires_slurm
async def test_user_switch_while_grpc_busy(store, work_dir: Path) -> None:
    """Commands run as another user must not fork a process whose gRPC threads are busy.

    Python's subprocess forks the whole process for `user=`, and gRPC's fork handlers then
    aborted some of the children. Run through setpriv, every check must succeed.
    """
    readable = work_dir / "readable.txt"
    readable.write_text("for the munge user\n")
    readable.chmod(0o644)
    stop = asyncio.Event()

    async def keep_grpc_busy() -> int:
        calls = 0
        while not stop.is_set():
            await store.list(Namespace)
            calls += 1
        return calls

    busy = asyncio.create_task(keep_grpc_busy())
    try:
        results = await asyncio.to_thread(lambda: [_user_can_read("munge", readable) for _ in range(200)])
    finally:
        stop.set()
    calls = await busy

    assert calls > 0
    assert results.count(False) == 0


def test_load_without_state_names_command(tmp_path: Path) -> None:
    with pytest.raises(LocalClusterError, match="start one with 'skyshift-slurm-local up'"):
        LocalSlurmCluster.load(tmp_path)
