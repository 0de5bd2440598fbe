"""Lease routes and fenced writes of the API server and the store, against a real etcd."""

from __future__ import annotations

import asyncio

import pytest

from skyshift_core.errors import ConflictError, LeaseLostError
from skyshift_core.objects import Job
from skyshift_core.store import Fence

LEASES = "/api/v1/leases"


def job_model(name: str, run: str = "true", resource_version: str | None = None) -> Job:
    metadata = {"name": name, "resource_version": resource_version}
    return Job.model_validate({"kind": "Job", "metadata": metadata, "spec": {"run": run}})


def test_acquire_read_renew_release(api):
    acquired = api.post(f"{LEASES}/cm/acquire", json={"holder": "host-a_1", "ttl_seconds": 5})
    assert acquired.status_code == 200, acquired.text
    assert acquired.json()["holder"] == "host-a_1"
    assert acquired.json()["ttl_seconds"] >= 5

    read = api.get(f"{LEASES}/cm").json()
    assert read["holder"] == "host-a_1"
    assert read["lease_id"] == acquired.json()["lease_id"]
    assert 0 < read["remaining_seconds"] <= read["ttl_seconds"]

    renewed = api.post(f"{LEASES}/cm/renew", json={"holder": "host-a_1"})
    assert renewed.status_code == 200, renewed.text
    assert renewed.json()["resource_version"] == acquired.json()["resource_version"]

    again = api.post(f"{LEASES}/cm/acquire", json={"holder": "host-a_1", "ttl_seconds": 5})
    assert again.status_code == 200
    assert again.json()["lease_id"] == acquired.json()["lease_id"]

    released = api.post(f"{LEASES}/cm/release", json={"holder": "host-a_1"})
    assert released.status_code == 200, released.text
    assert api.get(f"{LEASES}/cm").status_code == 404


def test_lease_errors_in_status_shape(api):
    api.post(f"{LEASES}/cm/acquire", json={"holder": "host-a_1", "ttl_seconds": 5})
    cases = [
        # (request, expected code, expected reason, words the message must contain)
        (("post", f"{LEASES}/cm/acquire", {"holder": "host-b_2"}), 409, "Conflict", "held by 'host-a_1'"),
        (("post", f"{LEASES}/cm/renew", {"holder": "host-b_2"}), 409, "LeaseLost", "held by 'host-a_1'"),
        (("post", f"{LEASES}/cm/release", {"holder": "host-b_2"}), 409, "LeaseLost", "only the holder"),
        (("get", f"{LEASES}/other", None), 404, "NotFound", "not held by anyone"),
        (("post", f"{LEASES}/other/renew", {"holder": "host-a_1"}), 409, "LeaseLost", "acquire it again"),
        (("post", f"{LEASES}/other/release", {"holder": "host-a_1"}), 404, "NotFound", "nothing to release"),
        (("post", f"{LEASES}/Bad_Name/acquire", {"holder": "a"}), 422, "Invalid", "invalid lease name"),
        (("post", f"{LEASES}/cm/acquire", {"holder": "has space"}), 422, "Invalid", "invalid lease holder"),
        (("post", f"{LEASES}/cm/acquire", {"holder": "a", "ttl_seconds": 0}), 422, "Invalid", "ttl_seconds"),
        (("post", f"{LEASES}/cm/acquire", {}), 422, "Invalid", "holder"),
    ]
    for (method, path, body), code, reason, words in cases:
        response = api.request(method.upper(), path, json=body)
        assert response.status_code == code, (path, body, response.text)
        status = response.json()
        assert status["kind"] == "Status", response.text
        assert status["reason"] == reason, response.text
        assert words in status["message"], response.text


def test_conflict_details_name_holder(api):
    api.post(f"{LEASES}/cm/acquire", json={"holder": "host-a_1", "ttl_seconds": 5})

    response = api.post(f"{LEASES}/cm/acquire", json={"holder": "host-b_2", "ttl_seconds": 5})

    assert response.json()["details"]["holder"] == "host-a_1"


@pytest.mark.parametrize(
    ("header", "words"),
    [
        pytest.param("no-slash", "expected <lease-name>/<holder>", id="no-separator"),
        pytest.param("cm/", "expected <lease-name>/<holder>", id="empty-holder"),
        pytest.param("CM/host", "invalid lease name", id="bad-lease-name"),
    ],
)
def test_bad_fence_header_rejected(api, job, header, words):
    response = api.post("/api/v1/namespaces/default/jobs", json=job("j1"), headers={"X-SkyShift-Fence": header})

    assert response.status_code == 422, response.text
    assert words in response.json()["message"]
    assert api.get("/api/v1/namespaces/default/jobs/j1").status_code == 404


def test_fenced_writes_through_every_verb(api, job):
    api.post(f"{LEASES}/cm/acquire", json={"holder": "leader", "ttl_seconds": 5})
    good = {"X-SkyShift-Fence": "cm/leader"}
    stale = {"X-SkyShift-Fence": "cm/someone-else"}
    path = "/api/v1/namespaces/default/jobs"
    merge = {"content-type": "application/merge-patch+json"}
    assert api.post(path, json=job("j1"), headers=good).status_code == 201
    current = api.get(f"{path}/j1").json()

    rejected = [
        api.post(path, json=job("j2"), headers=stale),
        api.put(f"{path}/j1", json={**current, "spec": {**current["spec"], "run": "echo put"}}, headers=stale),
        api.patch(f"{path}/j1", content=b'{"spec": {"run": "echo patch"}}', headers={**merge, **stale}),
        api.put(f"{path}/j1/status", json=current, headers=stale),
        api.delete(f"{path}/j1", headers=stale),
    ]
    for response in rejected:
        assert (response.status_code, response.json()["reason"]) == (409, "LeaseLost"), response.text
    assert api.get(f"{path}/j1").json()["metadata"]["resource_version"] == current["metadata"]["resource_version"]

    accepted = [
        api.put(f"{path}/j1", json={**current, "spec": {**current["spec"], "run": "echo put"}}, headers=good),
        api.patch(f"{path}/j1", content=b'{"spec": {"run": "echo patch"}}', headers={**merge, **good}),
        api.delete(f"{path}/j1", headers=good),
    ]
    assert [response.status_code for response in accepted] == [200, 200, 200]


async def test_store_fence_checked_in_transaction(store):
    await store.acquire_lease("cm", "leader", 2)
    fence = Fence("cm", "leader")
    created = await store.create(job_model("j1"), fence=fence)

    # A stale resource_version under a valid fence is a plain conflict, not a lost lease.
    with pytest.raises(ConflictError) as conflict:
        await store.update(job_model("j1", run="echo v2", resource_version="1"), fence=fence)
    assert not isinstance(conflict.value, LeaseLostError)

    compares = await store.fence_compare(fence)
    await store.release_lease("cm", "leader")
    await store.acquire_lease("cm", "leader", 2)
    # The same holder's new tenure has a new create_revision, so a compare from the old one fails.
    with pytest.raises(LeaseLostError):
        await store.check_fence(fence, compares)
    updated = await store.update(job_model("j1", run="echo v3"), fence=fence)
    assert int(updated.metadata.resource_version) > int(created.metadata.resource_version)


async def test_lease_expires_without_renewal(store):
    first = await store.acquire_lease("cm", "first", 2)

    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + 15
    while True:
        try:
            second = await store.acquire_lease("cm", "second", 2)
            break
        except ConflictError:
            assert loop.time() < give_up_at, "the first lease did not expire within 15 s"
            await asyncio.sleep(0.2)

    assert second.revision > first.revision
    with pytest.raises(LeaseLostError):
        await store.renew_lease("cm", "first")
    with pytest.raises(LeaseLostError):
        await store.create(job_model("late"), fence=Fence("cm", "first"))
