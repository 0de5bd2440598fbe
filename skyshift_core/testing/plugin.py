"""pytest fixtures for SkyShift and plugin authors: a real etcd and a store on it.

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
def api_server(etcd_server: EtcdProcess, etcd_root: str):
    """An API server on a free loopback port over the test's own etcd prefix; yields its URL."""
    from skyshift_core.api.app import ApiSettings
    from skyshift_core.api.server import ServerThread
    from skyshift_core.local.processes import free_port

    settings = ApiSettings(etcd_endpoints=[etcd_server.endpoint], etcd_root=etcd_root, bookmark_interval=1.0)
    server = ServerThread(settings, free_port()).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def api(api_server: str):
    """An httpx client for the test's API server."""
    import httpx

    with httpx.Client(base_url=api_server, timeout=30) as client:
        yield client


@pytest.fixture
async def async_client(api_server: str):
    """An AsyncSkyShiftClient for the test's API server."""
    from skyshift_core.client import AsyncSkyShiftClient

    async with AsyncSkyShiftClient(api_server, timeout=30) as instance:
        yield instance


@pytest.fixture
async def control_plane(api_server: str):
    """Start controller managers against the test's API server.

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
        manager = ControllerManager(api_server, config=ControllerManagerConfig(**{**defaults, **settings}))
        managers.append((manager, asyncio.get_running_loop().create_task(manager.run())))
        return manager

    start.managers = managers
    yield start
    for manager, _ in managers:
        manager.stop()
    for _, task in managers:
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, 15)
