"""`skyshift up`, `status` and `down` as a user runs them: real processes in a temporary state directory."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from skyshift_core.local import controlplane
from skyshift_core.local.controlplane import LocalControlPlane
from skyshift_core.local.etcd import EtcdProcess
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


def port_accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


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


@pytest.fixture
def default_port(monkeypatch: pytest.MonkeyPatch) -> int:
    """A free loopback port that replaces 50051 as the default of an in-process `up`, so a test that
    leaves out --port never starts a server on 50051, even if `up` wrongly falls back to the default."""
    port = free_port()
    monkeypatch.setattr(controlplane, "DEFAULT_PORT", port)
    return port


def other_free_port(port: int) -> int:
    """Return a free loopback port other than `port`."""
    while (other := free_port()) == port:
        pass
    return other


def status_rows(state_dir: Path) -> tuple[int, dict[str, list[str]]]:
    """Run `skyshift status` and return its exit code and its rows by component name."""
    result = skyshift("status", "--state-dir", str(state_dir))
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:]}
    return result.returncode, rows


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


def test_up_refuses_etcd_data_dir_in_use(state_dir: Path):
    # An etcd started by hand on the control plane's data directory, as after a manual restart.
    foreign = EtcdProcess(data_dir=state_dir / "etcd", log_path=state_dir.parent / "foreign-etcd.log").start()
    try:
        result = skyshift("up", "--state-dir", str(state_dir), "--port", str(free_port()))

        assert result.returncode == 1
        assert f"another etcd (pid {foreign.pid}), which skyshift up did not start, uses" in result.stderr
        assert f"stop that one (kill {foreign.pid})" in result.stderr
        assert "Traceback" not in result.stderr
        assert recorded_pids(state_dir) == {}
        assert foreign.is_running()
    finally:
        foreign.stop()


def test_up_with_unreachable_external_etcd_starts_nothing(state_dir: Path):
    dead_etcd = f"127.0.0.1:{free_port()}"

    result = skyshift("up", "--state-dir", str(state_dir), "--port", str(free_port()), "--etcd", dead_etcd)

    assert result.returncode == 1
    expected = f"cannot connect to etcd at {dead_etcd}: Connection refused; start etcd there or correct --etcd"
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert recorded_pids(state_dir) == {}


def test_up_failure_stops_what_it_started(state_dir: Path):
    # This endpoint accepts connections but never responds, unlike etcd, so the API server never
    # becomes ready.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    silent_etcd = f"127.0.0.1:{silent.getsockname()[1]}"

    try:
        result = skyshift(
            "up", "--state-dir", str(state_dir), "--port", str(free_port()), "--etcd", silent_etcd, "--timeout", "1"
        )
    finally:
        silent.close()

    assert result.returncode == 1
    assert "api-server" in result.stdout
    assert "starting... failed" in result.stdout
    assert "was not ready within 1 s" in result.stderr
    assert "last lines of" in result.stderr
    assert recorded_pids(state_dir) == {}
    pid = int(re.search(r"api-server \(pid (\d+)\)", result.stderr).group(1))
    assert not is_alive(pid)


def test_up_reuses_recorded_port(state_dir: Path, default_port: int):
    port = other_free_port(default_port)
    server = f"http://127.0.0.1:{port}"
    first = skyshift("up", "--state-dir", str(state_dir), "--port", str(port))
    assert first.returncode == 0, first.stdout + first.stderr
    pids = recorded_pids(state_dir)
    stop_process(pids["api-server"])

    # Without --port, up starts the API server again where the running controller manager expects it.
    state = LocalControlPlane(state_dir).up()

    assert state.server_url == server
    new_pids = recorded_pids(state_dir)
    assert new_pids["api-server"] != pids["api-server"]
    assert new_pids["controller-manager"] == pids["controller-manager"]
    assert httpx.get(f"{server}/readyz").status_code == 200
    returncode, rows = status_rows(state_dir)
    assert returncode == 0, rows
    assert rows["api-server"][2:4] == ["ready", server]
    assert rows["controller-manager"][2:4] == ["ready", server]


def test_up_keeps_external_etcd_on_restart(state_dir: Path, tmp_path: Path):
    external = EtcdProcess(data_dir=tmp_path / "external-etcd").start()
    try:
        first = skyshift("up", "--state-dir", str(state_dir), "--port", str(free_port()), "--etcd", external.endpoint)
        assert first.returncode == 0, first.stdout + first.stderr
        pids = recorded_pids(state_dir)
        stop_process(pids["api-server"])

        # Without --etcd, the API server comes back on the etcd that the controller manager's data is in.
        again = skyshift("up", "--state-dir", str(state_dir))

        assert again.returncode == 0, again.stdout + again.stderr
        assert f"external ({external.endpoint})" in again.stdout
        assert "etcd" not in recorded_pids(state_dir)
    finally:
        skyshift("down", "--state-dir", str(state_dir))
        external.stop()


def test_up_rejects_other_port(state_dir: Path):
    port = free_port()
    other_port = other_free_port(port)
    first = skyshift("up", "--state-dir", str(state_dir), "--port", str(port))
    assert first.returncode == 0, first.stdout + first.stderr
    pids = recorded_pids(state_dir)
    stop_process(pids["api-server"])

    rejected = skyshift("up", "--state-dir", str(state_dir), "--port", str(other_port))

    assert rejected.returncode == 1
    assert f"sends its requests to http://127.0.0.1:{port}" in rejected.stderr
    assert f"would start at http://127.0.0.1:{other_port}" in rejected.stderr
    assert f"skyshift down --state-dir {state_dir.absolute()}" in rejected.stderr
    assert "Traceback" not in rejected.stderr
    assert recorded_pids(state_dir) == pids

    # The recorded port is still accepted, and a second run with it starts nothing.
    for _ in range(2):
        repaired = skyshift("up", "--state-dir", str(state_dir), "--port", str(port))
        assert repaired.returncode == 0, repaired.stdout + repaired.stderr
        assert f"controller-manager  already running (pid {pids['controller-manager']}" in repaired.stdout
    assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200


def test_up_during_api_server_shutdown(state_dir: Path):
    port = free_port()
    first = skyshift("up", "--state-dir", str(state_dir), "--port", str(port))
    assert first.returncode == 0, first.stdout + first.stderr
    old_pid = recorded_pids(state_dir)["api-server"]

    # After SIGTERM the server closes its port first and then waits for open watches (the controller
    # manager's) to close. SIGSTOP keeps it in that state until up has found it still running.
    os.kill(old_pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while port_accepts_connections(port):
        assert time.monotonic() < deadline, f"API server pid {old_pid} still accepts connections after SIGTERM"
        time.sleep(0.05)
    os.kill(old_pid, signal.SIGSTOP)
    try:
        up = subprocess.Popen(
            [sys.executable, "-m", "skyshift_core.cli.main", "up", "--state-dir", str(state_dir)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        # up prints etcd's line after it has recorded which components run, so it has seen the old server.
        etcd_line = up.stdout.readline()
    finally:
        os.kill(old_pid, signal.SIGCONT)
    stdout, stderr = up.communicate(timeout=120)
    stdout = etcd_line + stdout

    assert up.returncode == 0, stdout + stderr
    assert f"pid {old_pid} exited while up waited for it to be ready" in stdout
    assert not is_alive(old_pid)
    new_pid = recorded_pids(state_dir)["api-server"]
    assert new_pid != old_pid
    assert f"ready (pid {new_pid}, http://127.0.0.1:{port})" in stdout
    assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200


def test_status_controller_manager_wrong_server(state_dir: Path):
    port = free_port()
    other_server = f"http://127.0.0.1:{other_free_port(port)}"
    first = skyshift("up", "--state-dir", str(state_dir), "--port", str(port))
    assert first.returncode == 0, first.stdout + first.stderr

    # Older versions of up left this state behind: the API server restarted on another port than
    # the one that the running controller manager was started with.
    state_file = state_dir / "state.json"
    state = json.loads(state_file.read_text())
    state["processes"]["controller-manager"]["endpoint"] = other_server
    state_file.write_text(json.dumps(state))

    returncode, rows = status_rows(state_dir)
    assert returncode == 1
    assert rows["api-server"][2] == "ready"
    assert rows["controller-manager"][2:5] == ["not", "ready", other_server]

    rejected = skyshift("up", "--state-dir", str(state_dir))
    assert rejected.returncode == 1
    assert f"sends its requests to {other_server}" in rejected.stderr
    assert f"but the API server runs at http://127.0.0.1:{port}" in rejected.stderr
    assert f"Run skyshift down --state-dir {state_dir.absolute()}, then skyshift up." in rejected.stderr


PROFILES_CONFIG = """\
scheduler:
  profiles:
    - name: default
      divide: spread
    - name: packed
      divide: binpack
"""


def controller_manager_argv(state_dir: Path) -> list[str]:
    return json.loads((state_dir / "state.json").read_text())["processes"]["controller-manager"]["argv"]


def test_up_controller_manager_config(state_dir: Path, tmp_path: Path):
    config = tmp_path / "cm.yaml"
    config.write_text(PROFILES_CONFIG)
    env = {**os.environ, "SKYSHIFT_STATE_DIR": str(state_dir)}

    first = skyshift("up", "--port", str(free_port()), "--controller-manager-config", str(config), env=env)

    assert first.returncode == 0, first.stdout + first.stderr
    assert f"The controller manager runs with the config {config}" in first.stdout
    argv = controller_manager_argv(state_dir)
    assert argv[argv.index("--config") + 1] == str(config)
    assert argv[argv.index("--token-file") + 1] == str(state_dir / "controller-manager.token")
    log = (state_dir / "logs" / "controller-manager.log").read_text()
    assert "Scheduler profiles: default, packed" in log
    returncode, rows = status_rows(state_dir)
    assert returncode == 0, rows
    assert rows["controller-manager"][2] == "ready"
    assert rows["controller-manager"][5] == str(config)
    assert rows["api-server"][5] == "-"

    # Left out, the option keeps the recorded file, so up finds everything running.
    pids = recorded_pids(state_dir)
    again = skyshift("up", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("already running") == 3
    assert recorded_pids(state_dir) == pids


def test_up_rejects_config_change(state_dir: Path, tmp_path: Path):
    config = tmp_path / "cm.yaml"
    config.write_text(PROFILES_CONFIG)
    other = tmp_path / "other.yaml"
    other.write_text(PROFILES_CONFIG)
    first = skyshift(
        "up", "--state-dir", str(state_dir), "--port", str(free_port()), "--controller-manager-config", str(config)
    )
    assert first.returncode == 0, first.stdout + first.stderr
    pids = recorded_pids(state_dir)
    restart = (
        f"skyshift down --state-dir {state_dir}, then skyshift up --state-dir {state_dir} --controller-manager-config"
    )

    switched = skyshift("up", "--state-dir", str(state_dir), "--controller-manager-config", str(other))
    assert switched.returncode == 1
    assert f"runs with {config}, but {other} was requested" in switched.stderr
    assert f"{restart} {other}" in switched.stderr

    # A file that could not be used is rejected first, without advice to restart with it.
    broken = tmp_path / "broken.yaml"
    broken.write_text("scheduler:\n  profiles: [{name: default, divide: spred}]\n")
    for bad, problem in ((broken, "No scheduler plugin named 'spred'"), (tmp_path / "nosuch.yaml", "not found")):
        rejected = skyshift("up", "--state-dir", str(state_dir), "--controller-manager-config", str(bad))
        assert rejected.returncode == 1
        assert problem in rejected.stderr
        pid = pids["controller-manager"]
        unchanged = f"Nothing was changed; the controller manager (pid {pid}) runs on with {config}"
        assert unchanged in rejected.stderr
        assert "skyshift down" not in rejected.stderr

    dropped = skyshift("up", "--state-dir", str(state_dir), "--controller-manager-config", "")
    assert dropped.returncode == 1
    assert f"runs with {config}, but no config file was requested" in dropped.stderr
    assert f"{restart} ''" in dropped.stderr

    config.write_text(PROFILES_CONFIG + "  grace_period: 10\n")
    edited = skyshift("up", "--state-dir", str(state_dir))
    assert edited.returncode == 1
    assert f"runs with {config} as it was when it started, and the file has changed since" in edited.stderr
    assert "Traceback" not in edited.stderr
    assert recorded_pids(state_dir) == pids
    status = skyshift("status", "--state-dir", str(state_dir))
    assert f"{config} (changed since start; run down and up to apply)" in status.stdout

    # An edit that broke the recorded file is reported as such, not with advice to restart with it.
    config.write_text(PROFILES_CONFIG.replace("divide: binpack", "divide: binpak"))
    broken_edit = skyshift("up", "--state-dir", str(state_dir))
    assert broken_edit.returncode == 1
    assert "No scheduler plugin named 'binpak'" in broken_edit.stderr
    assert "Nothing was changed; the controller manager" in broken_edit.stderr
    assert "skyshift down" not in broken_edit.stderr
    config.write_text(PROFILES_CONFIG + "  grace_period: 10\n")

    # After down, the recorded file starts the controller manager again with its new content.
    down = skyshift("down", "--state-dir", str(state_dir))
    assert down.returncode == 0, down.stdout + down.stderr
    restarted = skyshift("up", "--state-dir", str(state_dir))
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    argv = controller_manager_argv(state_dir)
    assert argv[argv.index("--config") + 1] == str(config)

    # An empty value goes back to the built-in settings.
    skyshift("down", "--state-dir", str(state_dir))
    plain = skyshift("up", "--state-dir", str(state_dir), "--controller-manager-config", "")
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "--config" not in controller_manager_argv(state_dir)
    returncode, rows = status_rows(state_dir)
    assert returncode == 0, rows
    assert rows["controller-manager"][5] == "-"


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "controller manager config {path}: not found"),
        ("scheduler:\n  profiles: [{name: default, divide: spread}\n", "invalid YAML in controller manager config {path}"),
        (
            "scheduler:\n  profiles: [{name: default, divide: spred}]\n",
            "invalid scheduler profiles in {path}: No scheduler plugin named 'spred'",
        ),
        ("scheduler:\n  profile: [{name: default, divide: spread}]\n", "unknown setting(s) profile in section scheduler of {path}"),
        ("schedulers: {}\n", "unknown section(s) schedulers in {path}"),
    ],
    ids=["missing", "invalid-yaml", "unknown-plugin", "unknown-setting", "unknown-section"],
)  # fmt: skip
def test_up_rejects_invalid_config(state_dir: Path, tmp_path: Path, content: str | None, message: str):
    config = tmp_path / "cm.yaml"
    if content is not None:
        config.write_text(content)

    result = skyshift(
        "up", "--state-dir", str(state_dir), "--port", str(free_port()), "--controller-manager-config", str(config)
    )

    assert result.returncode == 1
    assert message.format(path=config) in result.stderr
    assert "Nothing was started." in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert recorded_pids(state_dir) == {}


def test_up_recorded_config_gone(state_dir: Path, tmp_path: Path):
    missing = tmp_path / "removed.yaml"
    controlplane.ControlPlaneState(controller_manager_config=str(missing)).save(state_dir / "state.json")

    result = skyshift("up", "--state-dir", str(state_dir), "--port", str(free_port()))

    assert result.returncode == 1
    assert f"controller manager config {missing}: not found" in result.stderr
    assert "The last skyshift up recorded this file" in result.stderr
    assert f"skyshift up --state-dir {state_dir} --controller-manager-config ''" in result.stderr
    assert recorded_pids(state_dir) == {}


def test_state_dir_from_environment(tmp_path: Path):
    state_dir = tmp_path / "from-env"
    env = {**os.environ, "SKYSHIFT_STATE_DIR": str(state_dir)}

    status = skyshift("status", env=env)
    down = skyshift("down", env=env)

    assert status.returncode == 1
    assert f"{state_dir}/logs/etcd.log" in status.stdout
    assert f"no control plane is recorded in {state_dir}" in down.stdout
    for command in ("up", "down", "status"):
        help_text = skyshift(command, "--help", env={**os.environ, "COLUMNS": "200"})
        # Click joins the variable and the default in one bracket, and may wrap it.
        assert "[env var: SKYSHIFT_STATE_DIR;" in " ".join(help_text.stdout.split()), command
