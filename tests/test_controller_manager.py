"""ControllerManager: readiness against a real API server, what it logs while it waits, its metrics
listener, and a clean stop."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from auth_helpers import create_user

from skyshift_core.controllers import manager as manager_module
from skyshift_core.controllers.manager import (
    DEFAULT_SCHEDULER_WORKERS,
    ControllerManager,
    ControllerManagerConfig,
    start_metrics_server,
)
from skyshift_core.local.processes import free_port


async def wait_for_file(path: Path, timeout: float = 10.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while not path.exists():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def test_controller_manager_ready_file_lifecycle(api_server: str, admin_token: str, tmp_path: Path):
    ready_file = tmp_path / "ready"
    manager = ControllerManager(api_server, ready_file=ready_file, health_interval=0.1, token=admin_token)
    task = asyncio.create_task(manager.run())

    became_ready = await wait_for_file(ready_file)
    content = ready_file.read_text().strip() if became_ready else ""
    manager.stop()
    await asyncio.wait_for(task, timeout=5)

    assert became_ready
    assert content == str(os.getpid())
    assert not ready_file.exists()


async def wait_for_absence(path: Path, timeout: float = 10.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while path.exists():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def test_ready_file_follows_api_server_health(etcd_server, etcd_root: str, admin_token: str, tmp_path: Path):
    """The ready file goes while the API server is down and comes back when it is ready again."""
    from skyshift_core.api.app import ApiSettings
    from skyshift_core.api.server import ServerThread
    from skyshift_core.auth.service import AuthSettings

    settings = ApiSettings(
        etcd_endpoints=[etcd_server.endpoint], etcd_root=etcd_root,
        auth=AuthSettings(audit_log=str(tmp_path / "audit.log")),
    )  # fmt: skip
    port = free_port()
    server = await asyncio.to_thread(ServerThread(settings, port).start)
    ready_file = tmp_path / "ready"
    manager = ControllerManager(server.url, ready_file=ready_file, health_interval=0.1, token=admin_token)
    task = asyncio.create_task(manager.run())
    try:
        assert await wait_for_file(ready_file)
        await asyncio.to_thread(server.stop)
        assert await wait_for_absence(ready_file), "the ready file stayed while the API server was down"
        server = await asyncio.to_thread(ServerThread(settings, port).start)
        assert await wait_for_file(ready_file), "the ready file did not come back with the API server"
        assert ready_file.read_text().strip() == str(os.getpid())
    finally:
        manager.stop()
        await asyncio.wait_for(task, timeout=10)
        await asyncio.to_thread(server.stop)
    assert not ready_file.exists()


async def test_controller_manager_stops_while_waiting_for_api(tmp_path: Path):
    ready_file = tmp_path / "ready"
    manager = ControllerManager(f"http://127.0.0.1:{free_port()}", ready_file=ready_file)
    task = asyncio.create_task(manager.run())

    await asyncio.sleep(0.5)
    manager.stop()
    await asyncio.wait_for(task, timeout=5)

    assert not ready_file.exists()


def test_scheduler_workers_default_and_config(tmp_path: Path):
    path = tmp_path / "controller-manager.yaml"
    path.write_text("scheduler:\n  grace_period: 30\n")
    assert ControllerManagerConfig.load(path).scheduler_workers == DEFAULT_SCHEDULER_WORKERS

    path.write_text("scheduler:\n  workers: 2\n")
    assert ControllerManagerConfig.load(path).scheduler_workers == 2


@pytest.mark.parametrize("value", ["0", "-3", "two", "1.5", "true"])
def test_invalid_scheduler_workers_rejected(tmp_path: Path, value: str):
    path = tmp_path / "controller-manager.yaml"
    path.write_text(f"scheduler:\n  workers: {value}\n")

    with pytest.raises(ValueError, match=r"invalid scheduler.workers .* expected an integer of at least 1"):
        ControllerManagerConfig.load(path)


class SyncedInformer:
    """Test double of an Informer whose first listing has arrived."""

    async def wait_for_sync(self, timeout=None) -> bool:
        return True


async def test_freeze_after_sync_exempts_objects():
    from skyshift_core.controllers.manager import _freeze_after_sync

    assert gc.get_freeze_count() == 0
    try:
        await _freeze_after_sync([SyncedInformer(), SyncedInformer()])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


async def test_manager_unfreezes_when_term_ends(api_server: str, admin_token: str, tmp_path: Path):
    manager = ControllerManager(
        api_server, ready_file=tmp_path / "ready", health_interval=0.1, token=admin_token, freeze_after_sync=True
    )
    task = asyncio.create_task(manager.run())
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while gc.get_freeze_count() == 0 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        frozen_while_leading = gc.get_freeze_count()
    finally:
        manager.stop()
        await asyncio.wait_for(task, timeout=10)

    assert frozen_while_leading > 0
    # The ended term's caches are collectable again.
    assert gc.get_freeze_count() == 0


def test_manager_freezes_only_when_asked():
    assert ControllerManager("http://127.0.0.1:1").freeze_after_sync is False


# ---- waiting for the API server: causes, and tokens it rejects ------------------------------


async def wait_for_log(caplog: pytest.LogCaptureFixture, text: str, count: int = 1, timeout: float = 15.0) -> list[str]:
    """Wait until `count` captured log messages contain `text`; return all that do."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = [record.getMessage() for record in caplog.records if text in record.getMessage()]
        if len(found) >= count or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.02)


async def test_waiting_logs_cause_every_nth_attempt(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    monkeypatch.setattr(manager_module, "INITIAL_RETRY_DELAY", 0.001)
    monkeypatch.setattr(manager_module, "MAX_RETRY_DELAY", 0.001)
    caplog.set_level(logging.WARNING, logger=manager_module.__name__)
    url = f"http://127.0.0.1:{free_port()}"
    manager = ControllerManager(url)
    task = asyncio.create_task(manager.run())

    logged = await wait_for_log(caplog, "is not ready (attempt", count=3)
    manager.stop()
    await asyncio.wait_for(task, timeout=5)

    every = manager_module.WAITING_LOG_EVERY
    assert [int(message.split("(attempt ")[1].split(";")[0]) for message in logged[:3]] == [1, every, 2 * every]
    assert f"cannot reach the SkyShift API server at {url}" in logged[0]


async def test_rejected_token_not_ready(api_server: str, tmp_path: Path, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger=manager_module.__name__)
    ready_file = tmp_path / "ready"
    token_file = tmp_path / "cm.token"
    manager = ControllerManager(
        api_server, ready_file=ready_file, token="sks_cm-user.0011223344556677.revoked",
        token_source=f"--token-file {token_file}",
    )  # fmt: skip
    task = asyncio.create_task(manager.run())

    errors = await wait_for_log(caplog, "rejects this controller manager's token")
    still_waiting = not task.done()
    manager.stop()
    await asyncio.wait_for(task, timeout=5)

    assert still_waiting
    assert len(errors) == 1
    assert f"from --token-file {token_file} with 401" in errors[0]
    assert "skyshift token create --user cm-user" in errors[0]
    assert "skyshift login" not in errors[0]
    assert not ready_file.exists()
    assert "Controller manager ready" not in caplog.text


async def test_revoked_token_removes_ready_file(api, api_server: str, tmp_path: Path, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.ERROR, logger=manager_module.__name__)
    token = create_user(api, "cm-user", ("admin",))
    ready_file = tmp_path / "ready"
    manager = ControllerManager(api_server, ready_file=ready_file, health_interval=0.1, token=token)
    task = asyncio.create_task(manager.run())
    try:
        assert await wait_for_file(ready_file)
        revoked = await asyncio.to_thread(api.delete, f"/api/v1/users/cm-user/tokens/{token.split('.')[1]}")
        assert revoked.status_code == 200, revoked.text
        assert await wait_for_absence(ready_file), "the ready file stayed while the token was rejected"
    finally:
        manager.stop()
        await asyncio.wait_for(task, timeout=10)

    assert "rejects this controller manager's token" in caplog.text


# ---- the metrics listener -------------------------------------------------------------------


def test_metrics_listener_serves_only_metrics_path():
    port = free_port()
    server = start_metrics_server(port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            metrics = client.get("/metrics")
            others = {path: client.get(path).status_code for path in ("/", "/healthz", "/readyz", "/metrics/x")}
    finally:
        server.shutdown()
        server.server_close()

    assert metrics.status_code == 200
    assert "python_info" in metrics.text
    assert others == {"/": 404, "/healthz": 404, "/readyz": 404, "/metrics/x": 404}


def test_metrics_port_in_use_one_line(tmp_path: Path):
    token_file = tmp_path / "cm.token"
    token_file.write_text("sks_cm-user.0011223344556677.unused\n")
    environment = {**os.environ, "HOME": str(tmp_path)}
    for name in ("SKYSHIFT_CONFIG", "SKYSHIFT_SERVER", "SKYSHIFT_TOKEN", "SKYSHIFT_CA_FILE"):
        environment.pop(name, None)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        command = [
            sys.executable, "-m", "skyshift_core.cli.main", "controller-manager",
            "--server", f"http://127.0.0.1:{free_port()}", "--token-file", str(token_file), "--metrics-port", str(port),
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=environment)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"Error: cannot serve metrics on 127.0.0.1:{port} (--metrics-host 127.0.0.1 --metrics-port {port}): "
        "the port is already in use "
        "by another process; pass another --metrics-port or stop that process"
    ]


def test_manager_user_matches_bootstrap():
    # The manager names this user in its 401 advice without importing the auth package.
    from skyshift_core.auth.rbac import CONTROLLER_MANAGER_USER

    assert manager_module.CONTROLLER_MANAGER_USER == CONTROLLER_MANAGER_USER


def test_metrics_host_option_binds_that_address():
    """--metrics-host lets a Prometheus on another machine scrape; here it binds loopback explicitly."""
    import urllib.request

    port = free_port()
    server = manager_module.start_metrics_server(port, "127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            body = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()

    assert server.server_address[0] == "127.0.0.1"
    assert "# HELP python_info" in body
