"""The scheduler's FilterPolicies for a Job newer than what the policy informer has seen."""

from __future__ import annotations

import asyncio

from skyshift_core.controllers.scheduler import SchedulerReconciler
from skyshift_core.objects import FilterPolicy
from skyshift_core.runtime import Informer


def policy_item(name: str) -> dict:
    return {"kind": "FilterPolicy", "metadata": {"name": name, "namespace": "default"},
            "spec": {"cluster_filter": {"exclude": ["eu-2"]}, "labels_selector": {"team": "ml"}}}  # fmt: skip


class ListingClient:
    """Test double of the API client: each FilterPolicy listing returns the next (revision, names)."""

    def __init__(self, listings: list[tuple[int, list[str]]]) -> None:
        self.listings = list(listings)
        self.calls = 0
        self.release = asyncio.Event()
        self.release.set()

    async def list_all(self, kind, namespace=None, **options) -> dict:
        self.calls += 1
        await self.release.wait()
        revision, names = self.listings.pop(0)
        return {"metadata": {"resource_version": str(revision)}, "items": [policy_item(name) for name in names]}


def scheduler_with(client: ListingClient, informer_revision: int | None) -> SchedulerReconciler:
    informers = [Informer(client, kind, resync_period=None) for kind in ("jobs", "clusters", "filterpolicies")]
    informers[2]._resource_version = None if informer_revision is None else str(informer_revision)
    return SchedulerReconciler(client, *informers, profiles={})


async def test_informer_current_needs_no_listing():
    client = ListingClient([])
    scheduler = scheduler_with(client, informer_revision=50)

    assert await scheduler._policies_as_of(50) == []
    assert client.calls == 0


async def test_informer_behind_lists_policies_once():
    client = ListingClient([(60, ["ml-policy"])])
    client.release.clear()
    scheduler = scheduler_with(client, informer_revision=50)

    # Two workers with Jobs newer than the informer share one listing.
    waiting = [asyncio.ensure_future(scheduler._policies_as_of(revision)) for revision in (55, 58)]
    await asyncio.sleep(0.01)
    client.release.set()
    results = await asyncio.gather(*waiting)

    assert client.calls == 1
    assert [[policy.metadata.name for policy in result] for result in results] == [["ml-policy"], ["ml-policy"]]
    assert all(isinstance(policy, FilterPolicy) for policy in results[0])
    # A Job no newer than the listing uses it without another one.
    assert [policy.metadata.name for policy in await scheduler._policies_as_of(60)] == ["ml-policy"]
    assert client.calls == 1


async def test_listing_older_than_job_lists_again():
    # The first listing ends at revision 56, below the Job's 58, so a second one follows.
    client = ListingClient([(56, []), (61, ["ml-policy"])])
    scheduler = scheduler_with(client, informer_revision=50)

    result = await scheduler._policies_as_of(58)

    assert client.calls == 2
    assert [policy.metadata.name for policy in result] == ["ml-policy"]


async def test_job_deleted_during_listing_not_scheduled():
    from skyshift_core.objects import Job
    from skyshift_core.runtime import Request
    from skyshift_core.scheduler.builtin import ClusterReady, FilterPolicyFilter, Placement, ResourcesFit
    from skyshift_core.scheduler.profile import build_profile
    from skyshift_scheduler_spread import SpreadPlugin

    plugins = {"cluster-ready": ClusterReady, "placement": Placement, "filter-policy": FilterPolicyFilter,
               "resources-fit": ResourcesFit, "spread": SpreadPlugin}  # fmt: skip
    client = ListingClient([(70, [])])
    client.release.clear()
    scheduler = scheduler_with(client, informer_revision=50)
    scheduler.profiles = {"default": build_profile({"name": "default", "divide": "spread"}, plugins.__getitem__)}
    job = Job.model_validate({"kind": "Job", "metadata": {"name": "train", "namespace": "default", "uid": "u1",
                                                         "resource_version": "60"}, "spec": {"run": "true"}})  # fmt: skip
    scheduler.jobs._cache[("default", "train")] = job

    reconcile = asyncio.ensure_future(scheduler.reconcile(Request("jobs", "default", "train")))
    await asyncio.sleep(0.01)
    # The Job is deleted while its FilterPolicies are being listed.
    del scheduler.jobs._cache[("default", "train")]
    client.release.set()

    assert await reconcile is None
    assert scheduler.cache._jobs == {}
