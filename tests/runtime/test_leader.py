"""Leader election with two electors over real API servers and etcd: takeover, release, fencing, deadlines."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from skyshift_core.client import AsyncSkyShiftClient
from skyshift_core.errors import LeaseLostError
from skyshift_core.runtime import LeaderElector

LEASE = "controller-manager"


class Candidate:
    """One elector and what happened to it, with event-loop times of its transitions."""

    def __init__(self, client: AsyncSkyShiftClient, identity: str, **options):
        self.elector = LeaderElector(client, LEASE, identity, **options)
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        self.leading_cancelled = False
        self.task: asyncio.Task | None = None

    async def lead(self) -> None:
        self.started_at = asyncio.get_running_loop().time()
        try:
            await asyncio.Event().wait()  # Lead until cancelled.
        except asyncio.CancelledError:
            self.leading_cancelled = True
            raise

    def stopped(self) -> None:
        self.stopped_at = asyncio.get_running_loop().time()

    def start(self) -> "Candidate":
        self.task = asyncio.ensure_future(self.elector.run(self.lead, self.stopped))
        return self

    async def kill(self) -> None:
        """Cancel the elector's task, releasing the lease only if the elector was built with release_on_cancel."""
        assert self.task is not None
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


async def test_one_leads_other_takes_over_after_kill(client, wait_until):
    first = Candidate(client, "first", ttl=2, release_on_cancel=False).start()
    await wait_until(lambda: first.started_at is not None, message="first leads")
    second = Candidate(client, "second", ttl=2).start()
    try:
        # Longer than the ttl, so only renewals can keep the first in office.
        await asyncio.sleep(2.5)
        assert first.elector.is_leader
        assert not second.elector.is_leader
        assert second.started_at is None

        assert REGISTRY.get_sample_value("leader_election_master_status", {"name": LEASE}) == 1

        await first.kill()
        assert first.leading_cancelled
        assert first.stopped_at is not None
        assert REGISTRY.get_sample_value("leader_election_master_status", {"name": LEASE}) == 0
        await wait_until(lambda: second.started_at is not None, timeout=10, message="second takes over after the ttl")
        assert second.started_at > first.stopped_at
    finally:
        await second.kill()


async def test_deposed_leader_fenced_write_rejected(client, api, admin_token, job, wait_until):
    first = Candidate(client, "first", ttl=2, release_on_cancel=False).start()
    await wait_until(lambda: first.started_at is not None, message="first leads")
    first_fence = first.elector.fence_header()
    async with first.elector.fenced_client() as fenced:
        await fenced.create(job("by-first"))
    await first.kill()
    second = Candidate(client, "second", ttl=2).start()
    try:
        await wait_until(lambda: second.started_at is not None, timeout=10, message="second takes over")

        async with AsyncSkyShiftClient(client.server_url, token=admin_token, headers=first_fence) as deposed:
            with pytest.raises(LeaseLostError) as caught:
                await deposed.create(job("by-deposed"))
            with pytest.raises(LeaseLostError):
                await deposed.patch("jobs", "by-first", {"spec": {"run": "echo deposed"}})
            with pytest.raises(LeaseLostError):
                await deposed.delete("jobs", "by-first")
        assert "held by 'second'" in caught.value.message
        response = api.post("/api/v1/namespaces/default/jobs", json=job("raw-deposed"), headers=first_fence)
        assert response.status_code == 409
        assert response.json()["reason"] == "LeaseLost"

        async with second.elector.fenced_client() as fenced:
            await fenced.create(job("by-second"))
            await fenced.patch("jobs", "by-first", {"spec": {"run": "echo second"}})
        await client.create(job("unfenced"))
        names = {item["metadata"]["name"] for item in (await client.list("jobs"))["items"]}
        assert names == {"by-first", "by-second", "unfenced"}
        assert (await client.get("jobs", "by-first"))["spec"]["run"] == "echo second"
    finally:
        await second.kill()


async def test_release_hands_over_at_once(client, api, wait_until):
    # A ttl far beyond the deadline below: only a release can let the second in that soon.
    first = Candidate(client, "first", ttl=60, retry_every=0.1).start()
    await wait_until(lambda: first.started_at is not None, message="first leads")
    second = Candidate(client, "second", ttl=60, retry_every=0.1).start()
    try:
        await asyncio.sleep(0.3)
        assert not second.elector.is_leader

        await first.kill()
        await wait_until(lambda: second.started_at is not None, timeout=10, message="second takes over after the release")
        assert api.get(f"/api/v1/leases/{LEASE}").json()["holder"] == "second"
    finally:
        await second.kill()


async def test_leader_stops_before_other_acquires(restartable_api, unstarted_api, admin_token, wait_until):
    await asyncio.to_thread(unstarted_api.start)
    async with (
        AsyncSkyShiftClient(restartable_api.url, timeout=5, token=admin_token) as first_client,
        AsyncSkyShiftClient(unstarted_api.url, timeout=5, token=admin_token) as second_client,
    ):
        first = Candidate(first_client, "first", ttl=3).start()
        await wait_until(lambda: first.started_at is not None, message="first leads")
        second = Candidate(second_client, "second", ttl=3, retry_every=0.1).start()
        try:
            # The first leader's API server goes away, so it can no longer renew; etcd stays up.
            await restartable_api.stop()
            await wait_until(lambda: second.started_at is not None, timeout=15, message="second takes over")

            assert first.leading_cancelled
            assert first.stopped_at is not None
            assert first.stopped_at < second.started_at
            assert first.task.done()
        finally:
            await second.kill()


def test_elector_rejects_unsafe_timing():
    client = AsyncSkyShiftClient("http://127.0.0.1:1")

    with pytest.raises(ValueError, match="renew_deadline"):
        LeaderElector(client, LEASE, "x", ttl=10, renew_deadline=10)
    with pytest.raises(ValueError, match="renew_every"):
        LeaderElector(client, LEASE, "x", ttl=10, renew_every=8, renew_deadline=6)


def test_standby_exports_zero(client):
    LeaderElector(client, "standby-lease", "standby-1")

    assert REGISTRY.get_sample_value("leader_election_master_status", {"name": "standby-lease"}) == 0
