"""Fixtures for the controller runtime tests: API servers that can be stopped and restarted, and async clients."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from skyshift_core.api.app import ApiSettings
from skyshift_core.api.server import ServerThread
from skyshift_core.client import AsyncSkyShiftClient
from skyshift_core.local.processes import free_port


class RestartableApi:
    """An API server on a fixed loopback port that a test can stop and start again, as a crash and restart would."""

    def __init__(self, settings: ApiSettings):
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: ServerThread | None = None

    def start(self) -> "RestartableApi":
        self._server = ServerThread(self.settings, self.port).start()
        return self

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await asyncio.to_thread(server.stop)


@pytest.fixture
def api_settings(etcd_server, etcd_root) -> ApiSettings:
    return ApiSettings(etcd_endpoints=[etcd_server.endpoint], etcd_root=etcd_root, bookmark_interval=0.5)


@pytest.fixture
async def restartable_api(api_settings):
    api = await asyncio.to_thread(RestartableApi(api_settings).start)
    try:
        yield api
    finally:
        await api.stop()


@pytest.fixture
async def unstarted_api(api_settings):
    """An API server that is not running yet; the test starts it with `await asyncio.to_thread(api.start)`."""
    api = RestartableApi(api_settings)
    try:
        yield api
    finally:
        await api.stop()


@pytest.fixture
async def client(restartable_api, admin_token):
    async with AsyncSkyShiftClient(restartable_api.url, timeout=10, token=admin_token) as instance:
        yield instance


async def eventually(condition: Callable[[], bool | Awaitable[bool]], timeout: float = 15.0, message: str = "") -> None:
    """Wait until `condition()` is true; fail the test after `timeout` seconds (a generous deadline, not a timing check)."""
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + timeout
    while True:
        outcome = condition()
        if asyncio.iscoroutine(outcome):
            outcome = await outcome
        if outcome:
            return
        if loop.time() > give_up_at:
            pytest.fail(f"condition not met within {timeout:g} s: {message or condition}")
        await asyncio.sleep(0.02)


@pytest.fixture
def wait_until():
    return eventually


def job_manifest(name: str, labels: dict | None = None, run: str = "true") -> dict:
    return {"kind": "Job", "metadata": {"name": name, "labels": labels or {}}, "spec": {"run": run}}


@pytest.fixture
def job():
    return job_manifest
