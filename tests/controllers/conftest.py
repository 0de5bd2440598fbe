"""A whole control plane in the test process: API server thread, controller manager task, and
simulated clusters (from the skyshift-simulated plugin)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from skyshift_core.client import AsyncSkyShiftClient
from skyshift_core.controllers.manager import ControllerManager, ControllerManagerConfig

pytest.importorskip("skyshift_simulated", reason="the skyshift-simulated plugin is not installed")


@pytest.fixture
async def client(api_server):
    async with AsyncSkyShiftClient(api_server, timeout=30) as instance:
        yield instance


@pytest.fixture
async def control_plane(api_server):
    """Start a controller manager against the test's API server; yields a function that starts more."""
    from skyshift_simulated import clear_registry

    clear_registry()
    managers: list[tuple[ControllerManager, asyncio.Task]] = []

    def start(**settings) -> ControllerManager:
        defaults = dict(lease_ttl=3, poll_interval=0.2, grace_period=2.0)
        config = ControllerManagerConfig(**{**defaults, **settings})
        manager = ControllerManager(api_server, config=config)
        managers.append((manager, asyncio.get_running_loop().create_task(manager.run())))
        return manager

    start.managers = managers
    yield start
    for manager, task in managers:
        manager.stop()
    for manager, task in managers:
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, 15)
    clear_registry()
