"""The store's etcd connection: a login cut off by a cancellation leaves no channel open."""

from __future__ import annotations

import asyncio

import pytest

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
