"""The store's etcd connection: a login cut off by a cancellation leaves no channel open, and a
request in flight on a client that another request closed is sent again."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from skyshift_core.local.etcd import EtcdProcess
from skyshift_core.local.processes import free_port
from skyshift_core.store import Store, etcd


class HangingLoginClient:
    """An etcd client whose login never finishes; it records whether it was closed."""

    instances: list["HangingLoginClient"] = []

    def __init__(self, **settings):
        self.settings = settings
        self.logging_in = asyncio.Event()
        self.closed = False
        HangingLoginClient.instances.append(self)

    async def connect(self) -> None:
        self.logging_in.set()
        await asyncio.Event().wait()

    async def close(self) -> None:
        self.closed = True


async def test_cancelled_login_closes_channel(monkeypatch: pytest.MonkeyPatch):
    HangingLoginClient.instances.clear()
    monkeypatch.setattr(etcd.aetcd, "Client", HangingLoginClient)
    # The fake client replaces the real one, so nothing is dialled.
    store = Store([f"127.0.0.1:{free_port()}"], username="root", password="secret")
    connecting = asyncio.create_task(store._connected_client())
    while not HangingLoginClient.instances:
        await asyncio.sleep(0.01)
    await HangingLoginClient.instances[0].logging_in.wait()

    connecting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await connecting

    assert HangingLoginClient.instances[0].closed
    assert store._client is None


@pytest.fixture
def own_etcd(tmp_path):
    """An etcd of this test's own, which the test pauses."""
    etcd_process = EtcdProcess(data_dir=tmp_path / "data").start()
    yield etcd_process
    etcd_process.stop()


async def test_request_survives_client_closed_by_another(own_etcd):
    store = Store([own_etcd.endpoint], deadline=30)
    try:
        await store.ping()
        client = await store._connected_client()
        # A paused etcd accepts the request and sends no response, so the request stays in flight.
        os.kill(own_etcd.pid, signal.SIGSTOP)
        try:
            request = asyncio.create_task(store.ping())
            await asyncio.sleep(0.5)
            assert not request.done()
            # Another request that failed closes the shared client; gRPC cancels the calls in flight on it.
            await store._rotate(client)
        finally:
            os.kill(own_etcd.pid, signal.SIGCONT)

        revision = await asyncio.wait_for(request, 30)

        assert revision > 0
        assert store._client is not client
    finally:
        await store.close()


async def test_clients_reconnect_at_least_every_second(own_etcd):
    """gRPC's default reconnect backoff grows to 120 s, and kept a store away from etcd for 45 s after
    a 75 s outage. An outage that long is too slow for a test, so this checks the channel options."""
    store = Store([own_etcd.endpoint], deadline=30)
    try:
        client = await store._connected_client()

        options = dict(client._options)

        assert options["grpc.max_reconnect_backoff_ms"] <= 1000
        assert options["grpc.initial_reconnect_backoff_ms"] <= options["grpc.max_reconnect_backoff_ms"]
    finally:
        await store.close()
