"""ControllerManager: readiness against a real API server, and a clean stop."""

from __future__ import annotations

import asyncio
import gc
import os
from pathlib import Path

import pytest

from skyshift_core.controllers.manager import DEFAULT_SCHEDULER_WORKERS, ControllerManager, ControllerManagerConfig
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
