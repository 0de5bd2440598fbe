"""Control-plane tests run on simulated clusters (the skyshift-simulated plugin) with the core's
`api_server`, `async_client` and `control_plane` fixtures."""

from __future__ import annotations

import pytest

pytest.importorskip("skyshift_simulated", reason="the skyshift-simulated plugin is not installed")


@pytest.fixture(autouse=True)
def fresh_simulated_clusters():
    """Simulated clusters keep their state per process; start and end every test without any."""
    from skyshift_simulated import clear_registry

    clear_registry()
    yield
    clear_registry()


@pytest.fixture
def client(async_client):
    return async_client
