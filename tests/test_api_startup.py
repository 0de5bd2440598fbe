"""An API server started before its etcd: it listens at once, /readyz reports what it waits for, and it
writes the default namespace and the built-in Roles once etcd responds."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import pytest

from skyshift_core.api.app import ApiSettings
from skyshift_core.api.server import ServerThread
from skyshift_core.auth.service import AuthSettings
from skyshift_core.local.etcd import EtcdProcess
from skyshift_core.local.processes import free_port
from skyshift_core.objects import Namespace, Role
from skyshift_core.store import Store

pytestmark = pytest.mark.skipif(
    shutil.which("etcd") is None, reason="etcd is not installed: apt-get install -y etcd-server"
)


def wait_for_status(url: str, code: int, timeout: float) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = httpx.get(url, timeout=5)
        if response.status_code == code or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


async def test_server_started_before_etcd_initializes_once_etcd_answers(tmp_path: Path):
    client_port = free_port()
    settings = ApiSettings(
        etcd_endpoints=[f"127.0.0.1:{client_port}"],
        etcd_root="/startup-test",
        auth=AuthSettings(audit_log=str(tmp_path / "audit.log")),
    )
    started = time.monotonic()
    server = ServerThread(settings, free_port()).start(timeout=20)
    etcd = None
    try:
        # It listens within seconds, not after the store's retries of its first writes.
        assert time.monotonic() - started < 10
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
        waiting = httpx.get(f"{server.url}/readyz", timeout=5)
        assert waiting.status_code == 503
        assert "waiting for etcd at 127.0.0.1:" in waiting.json()["message"]

        etcd = EtcdProcess(data_dir=tmp_path / "etcd", client_port=client_port).start()
        ready = wait_for_status(f"{server.url}/readyz", 200, timeout=60)
        assert ready.status_code == 200, ready.text

        store = Store([etcd.endpoint], root="/startup-test")
        try:
            assert (await store.get(Namespace, None, "default")).metadata.name == "default"
            assert (await store.get(Role, None, "admin")).metadata.name == "admin"
        finally:
            await store.close()
    finally:
        server.stop()
        if etcd is not None:
            etcd.stop()
