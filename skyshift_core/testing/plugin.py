"""pytest fixtures for SkyShift and plugin authors: a real etcd, a store on it, and an API server with
an administrator's token.

Installed with the core as the `skyshift` pytest plugin, so any test suite in an environment with
SkyShift installed can request these fixtures. etcd runs as a child process on free loopback ports
with its data in a temporary directory (on /dev/shm when it exists, which is faster).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import AsyncIterator, Iterator

import pytest

from skyshift_core.local.etcd import EtcdProcess


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.hasplugin("asyncio"):
        # The conformance suites mark their async tests for pytest-asyncio. Without that plugin, the
        # scheduling plugin suites, which have no async tests, would warn about the unknown mark.
        # ClusterManagerConformance, whose tests are async, fails with a message naming the plugin.
        config.addinivalue_line("markers", "asyncio: an async test that needs pytest-asyncio, which is not installed")


def _scratch_dir(prefix: str) -> Path:
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[EtcdProcess]:
    """A real etcd for the whole test session; skipped with the install command when etcd is missing."""
    if shutil.which("etcd") is None:
        pytest.skip("etcd is not installed: apt-get install -y etcd-server etcd-client")
    directory = _scratch_dir("skyshift-etcd-")
    etcd = EtcdProcess(data_dir=directory / "data").start()
    try:
        yield etcd
    finally:
        etcd.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def etcd_root() -> str:
    """A key prefix of its own for each test, so tests sharing one etcd never see each other's objects."""
    return f"/skyshift-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def store(etcd_server: EtcdProcess, etcd_root: str) -> AsyncIterator["Store"]:  # noqa: F821
    from skyshift_core.store import Store

    instance = Store([etcd_server.endpoint], root=etcd_root)
    try:
        yield instance
    finally:
        await instance.close()


@pytest.fixture
def admin_token(etcd_server: EtcdProcess, etcd_root: str) -> str:
    """A token of user `admin`, bound to the built-in `admin` Role, in the test's etcd prefix."""
    from skyshift_core.auth.bootstrap import bootstrap_admin_token, run_sync
    from skyshift_core.store import Store

    async def bootstrap() -> str:
        store = Store([etcd_server.endpoint], root=etcd_root)
        try:
            return await bootstrap_admin_token(store)
        finally:
            await store.close()

    return run_sync(bootstrap)


@pytest.fixture
def audit_log_path(tmp_path: Path) -> Path:
    """Where the `api_server` fixture's server writes its audit log (JSON lines)."""
    return tmp_path / "audit.log"


@pytest.fixture
def api_server(etcd_server: EtcdProcess, etcd_root: str, audit_log_path: Path):
    """An API server on a free loopback port over the test's own etcd prefix; yields its URL.

    Every request except /healthz and /readyz needs a token: use `api` (sends `admin_token`),
    `admin_token` with your own client, or `anonymous_api` to check what happens without one.
    """
    from skyshift_core.api.app import ApiSettings
    from skyshift_core.api.server import ServerThread
    from skyshift_core.auth.service import AuthSettings
    from skyshift_core.local.processes import free_port

    settings = ApiSettings(
        etcd_endpoints=[etcd_server.endpoint],
        etcd_root=etcd_root,
        bookmark_interval=1.0,
        auth=AuthSettings(audit_log=str(audit_log_path)),
    )
    server = ServerThread(settings, free_port()).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def api(api_server: str, admin_token: str):
    """An httpx client for the test's API server that authenticates as `admin`."""
    import httpx

    headers = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=api_server, timeout=30, headers=headers) as client:
        yield client


@pytest.fixture
def anonymous_api(api_server: str):
    """An httpx client for the test's API server that sends no credentials."""
    import httpx

    with httpx.Client(base_url=api_server, timeout=30) as client:
        yield client


@pytest.fixture
def controller_manager_token(etcd_server: EtcdProcess, etcd_root: str) -> str:
    """A service token of the controller manager's identity, which holds only the rights it needs."""
    from skyshift_core.auth.bootstrap import bootstrap_controller_manager_token, run_sync
    from skyshift_core.store import Store

    async def bootstrap() -> str:
        store = Store([etcd_server.endpoint], root=etcd_root)
        try:
            return await bootstrap_controller_manager_token(store)
        finally:
            await store.close()

    return run_sync(bootstrap)


@pytest.fixture
async def async_client(api_server: str, admin_token: str):
    """An AsyncSkyShiftClient for the test's API server that authenticates as `admin`."""
    from skyshift_core.client import AsyncSkyShiftClient

    async with AsyncSkyShiftClient(api_server, timeout=30, token=admin_token) as instance:
        yield instance


@pytest.fixture
async def control_plane(api_server: str, controller_manager_token: str):
    """Start controller managers against the test's API server, as the controller manager's identity.

    Yields a function: `control_plane(**settings)` starts one more controller manager in this event
    loop (settings as in ControllerManagerConfig; short lease, poll and grace times by default) and
    returns it. `control_plane.managers` lists (manager, task) pairs. All are stopped afterwards.
    """
    import asyncio
    import contextlib

    from skyshift_core.controllers.manager import ControllerManager, ControllerManagerConfig

    managers: list = []

    def start(**settings):
        defaults = dict(lease_ttl=3, poll_interval=0.2, grace_period=2.0)
        manager = ControllerManager(
            api_server, config=ControllerManagerConfig(**{**defaults, **settings}), token=controller_manager_token
        )
        managers.append((manager, asyncio.get_running_loop().create_task(manager.run())))
        return manager

    start.managers = managers
    yield start
    for manager, _ in managers:
        manager.stop()
    for _, task in managers:
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, 15)
