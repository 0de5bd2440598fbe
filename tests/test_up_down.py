"""`skyshift up`, `status` and `down` as a user runs them: real processes in a temporary state directory."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from skyshift_core.local.processes import free_port, is_alive, stop_process

pytestmark = pytest.mark.skipif(
    shutil.which("etcd") is None, reason="etcd is not installed: apt-get install -y etcd-server"
)

EXAMPLE_JOB = Path(__file__).parent.parent / "examples" / "hello-job.yaml"


def skyshift(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    """Run the CLI in a new process, as `skyshift ARGS...` would."""
    return subprocess.run(
        [sys.executable, "-m", "skyshift_core.cli.main", *args],
        capture_output=True, text=True, env=env, input=input, timeout=120, check=False,
    )  # fmt: skip


def recorded_pids(state_dir: Path) -> dict[str, int]:
    state_file = state_dir / "state.json"
    if not state_file.exists():
        return {}
    processes = json.loads(state_file.read_text())["processes"]
    return {name: record["pid"] for name, record in processes.items()}


@pytest.fixture
def state_dir(tmp_path: Path):
    """A state directory whose processes are stopped after the test, whatever happened."""
    directory = tmp_path / "state"
    pids: dict[str, int] = {}
    try:
        yield directory
    finally:
        pids = recorded_pids(directory)
        skyshift("down", "--state-dir", str(directory))
        for pid in pids.values():
            if is_alive(pid):
                stop_process(pid)


def test_up_status_apply_down(state_dir: Path):
    port = free_port()
    server = f"http://127.0.0.1:{port}"

    first = skyshift("up", "--state-dir", str(state_dir), "--port", str(port))
    assert first.returncode == 0, first.stdout + first.stderr
    for component in ("etcd", "api-server", "controller-manager"):
        assert f"{component}" in first.stdout
    assert first.stdout.count("starting... ready (pid ") == 3
    assert f"export SKYSHIFT_CONFIG={state_dir / 'config.yaml'}" in first.stdout
    assert httpx.get(f"{server}/readyz").status_code == 200

    status = skyshift("status", "--state-dir", str(state_dir))
    assert status.returncode == 0, status.stdout + status.stderr
    rows = {line.split()[0]: line.split() for line in status.stdout.splitlines()[1:]}
    assert rows["etcd"][2] == "running"
    assert rows["api-server"][2:4] == ["ready", server]
    assert rows["controller-manager"][2] == "ready"

    # A second up with everything running starts nothing.
    pids = recorded_pids(state_dir)
    again = skyshift("up", "--state-dir", str(state_dir))
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("already running") == 3
    assert recorded_pids(state_dir) == pids

    # With one component dead, up starts only that one.
    stop_process(pids["controller-manager"])
    repaired = skyshift("up", "--state-dir", str(state_dir))
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert repaired.stdout.count("already running") == 2
    assert "controller-manager  starting... ready" in repaired.stdout
    new_pids = recorded_pids(state_dir)
    assert new_pids["etcd"] == pids["etcd"]
    assert new_pids["controller-manager"] != pids["controller-manager"]

    # The client config that up wrote leads the CLI to the server.
    env = {**os.environ, "SKYSHIFT_CONFIG": str(state_dir / "config.yaml")}
    env.pop("SKYSHIFT_SERVER", None)
    applied = skyshift("apply", "-f", str(EXAMPLE_JOB), env=env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert applied.stdout.strip() == "job.skyshift/hello created"
    listed = skyshift("get", "jobs", "-o", "name", env=env)
    assert listed.stdout.strip() == "job.skyshift/hello"

    down = skyshift("down", "--state-dir", str(state_dir))
    assert down.returncode == 0, down.stdout + down.stderr
    assert down.stdout.count("stopped (pid ") == 3
    for component, pid in new_pids.items():
        assert not is_alive(pid), f"{component} (pid {pid}) still runs after down"

    stopped = skyshift("status", "--state-dir", str(state_dir))
    assert stopped.returncode == 1
    assert stopped.stdout.count("stopped") == 3


def test_down_when_nothing_runs(tmp_path: Path):
    result = skyshift("down", "--state-dir", str(tmp_path / "never-started"))

    assert result.returncode == 0
    assert "Nothing to stop" in result.stdout


def test_up_without_etcd_on_path(state_dir: Path, tmp_path: Path):
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    env = {**os.environ, "PATH": str(empty_bin)}

    result = skyshift("up", "--state-dir", str(state_dir), "--port", str(free_port()), env=env)

    assert result.returncode != 0
    assert "etcd was not found on PATH" in result.stderr
    assert "apt-get install -y etcd-server etcd-client" in result.stderr
    assert "Traceback" not in result.stderr
    assert recorded_pids(state_dir) == {}


def test_up_port_taken(state_dir: Path):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        result = skyshift("up", "--state-dir", str(state_dir), "--port", str(port))

    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "--port" in result.stderr
    assert recorded_pids(state_dir) == {}


def test_up_failure_stops_what_it_started(state_dir: Path):
    # Nothing listens on this etcd endpoint, so the API server never becomes ready.
    dead_etcd = f"127.0.0.1:{free_port()}"

    result = skyshift(
        "up", "--state-dir", str(state_dir), "--port", str(free_port()), "--etcd", dead_etcd, "--timeout", "1"
    )

    assert result.returncode == 1
    assert "api-server" in result.stdout
    assert "starting... failed" in result.stdout
    assert "was not ready within 1 s" in result.stderr
    assert "last lines of" in result.stderr
    assert recorded_pids(state_dir) == {}
    pid = int(re.search(r"api-server \(pid (\d+)\)", result.stderr).group(1))
    assert not is_alive(pid)
