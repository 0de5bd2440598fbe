"""Finalizers: a delete marks an object that has them, and removing the last one deletes it."""

from __future__ import annotations

import pytest

from skyshift_core.objects import Cluster, Job, Namespace

MERGE = {"content-type": "application/merge-patch+json"}
CLUSTER = "/api/v1/clusters"
FINALIZER = "example.com/drain"


def cluster_body(name: str, finalizers: list[str] | None = None) -> dict:
    metadata: dict = {"name": name}
    if finalizers is not None:
        metadata["finalizers"] = finalizers
    return {"kind": "Cluster", "metadata": metadata, "spec": {"manager": "slurm"}}


def create_cluster(api, name: str, finalizers: list[str]) -> dict:
    response = api.post(CLUSTER, json=cluster_body(name, finalizers))
    assert response.status_code == 201, response.text
    return response.json()


def test_delete_with_finalizer_marks_object(api):
    create_cluster(api, "held", [FINALIZER])

    response = api.delete(f"{CLUSTER}/held")

    assert response.status_code == 202
    assert response.json()["metadata"]["deletion_timestamp"]
    stored = api.get(f"{CLUSTER}/held")
    assert stored.status_code == 200
    assert stored.json()["metadata"]["deletion_timestamp"] == response.json()["metadata"]["deletion_timestamp"]


def test_second_delete_keeps_first_timestamp(api):
    create_cluster(api, "twice", [FINALIZER])
    first = api.delete(f"{CLUSTER}/twice").json()

    second = api.delete(f"{CLUSTER}/twice")

    assert second.status_code == 202
    assert second.json()["metadata"]["deletion_timestamp"] == first["metadata"]["deletion_timestamp"]
    assert second.json()["metadata"]["resource_version"] == first["metadata"]["resource_version"]


def test_removing_last_finalizer_deletes(api):
    create_cluster(api, "release", [FINALIZER, "example.com/other"])
    api.delete(f"{CLUSTER}/release")

    one_left = api.patch(f"{CLUSTER}/release", json={"metadata": {"finalizers": ["example.com/other"]}}, headers=MERGE)
    assert one_left.status_code == 200, one_left.text
    assert api.get(f"{CLUSTER}/release").status_code == 200

    none_left = api.patch(f"{CLUSTER}/release", json={"metadata": {"finalizers": []}}, headers=MERGE)
    assert none_left.status_code == 200, none_left.text
    assert api.get(f"{CLUSTER}/release").status_code == 404


async def test_watch_sees_mark_then_delete(store):
    events = store.watch(Cluster, resource_version=await store.ping())
    await store.create(Cluster.model_validate(cluster_body("watched", [FINALIZER])))
    await store.delete(Cluster, None, "watched")
    current = await store.get(Cluster, None, "watched")
    current.metadata.finalizers = []
    await store.update(current)

    kinds_seen = [(await anext(events)).type for _ in range(3)]
    await events.aclose()

    assert kinds_seen == ["ADDED", "MODIFIED", "DELETED"]


def test_adding_finalizer_while_deleting_rejected(api):
    create_cluster(api, "closing", [FINALIZER])
    api.delete(f"{CLUSTER}/closing")

    response = api.patch(
        f"{CLUSTER}/closing", json={"metadata": {"finalizers": [FINALIZER, "example.com/late"]}}, headers=MERGE
    )

    assert response.status_code == 422
    assert "is being deleted, so finalizers can only be removed, not added: example.com/late" in response.json()["message"]
    assert api.get(f"{CLUSTER}/closing").json()["metadata"]["finalizers"] == [FINALIZER]


def test_replace_without_finalizers_keeps_them(api):
    """Re-applying a manifest that does not list finalizers keeps a controller's finalizer."""
    created = create_cluster(api, "reapplied", [FINALIZER])
    body = cluster_body("reapplied")
    body["metadata"]["labels"] = {"tier": "gpu"}

    response = api.put(f"{CLUSTER}/reapplied", json=body)

    assert response.status_code == 200, response.text
    assert response.json()["metadata"]["finalizers"] == [FINALIZER]
    assert response.json()["metadata"]["labels"] == {"tier": "gpu"}
    assert created["metadata"]["finalizers"] == [FINALIZER]


def test_replace_with_empty_list_clears_finalizers(api):
    create_cluster(api, "cleared", [FINALIZER])

    response = api.put(f"{CLUSTER}/cleared", json=cluster_body("cleared", []))

    assert response.status_code == 200, response.text
    assert response.json()["metadata"]["finalizers"] == []
    assert api.delete(f"{CLUSTER}/cleared").status_code == 200
    assert api.get(f"{CLUSTER}/cleared").status_code == 404


def test_client_cannot_set_deletion_timestamp(api):
    body = cluster_body("early", [FINALIZER])
    body["metadata"]["deletion_timestamp"] = "2026-01-01T00:00:00Z"

    created = api.post(CLUSTER, json=body)
    replaced = api.put(f"{CLUSTER}/early", json=body)

    assert created.json()["metadata"]["deletion_timestamp"] is None
    assert replaced.json()["metadata"]["deletion_timestamp"] is None


@pytest.mark.parametrize("finalizer", ["Bad Name", "example.com/", "-lead"])
def test_invalid_finalizer_rejected(api, finalizer):
    response = api.post(CLUSTER, json=cluster_body("invalid", [finalizer]))

    assert response.status_code in (400, 422)
    assert f"invalid finalizer {finalizer!r}" in response.json()["message"]


def test_delete_precondition_applies_to_mark(api):
    created = create_cluster(api, "guarded", [FINALIZER])
    api.patch(f"{CLUSTER}/guarded", json={"metadata": {"labels": {"a": "b"}}}, headers=MERGE)

    stale = api.delete(f"{CLUSTER}/guarded", params={"resourceVersion": created["metadata"]["resource_version"]})

    assert stale.status_code == 409
    assert api.get(f"{CLUSTER}/guarded").json()["metadata"]["deletion_timestamp"] is None


async def test_namespaced_object_with_finalizer(store):
    await store.create(Namespace(metadata={"name": "team"}))
    job = Job.model_validate({"metadata": {"name": "held", "namespace": "team", "finalizers": [FINALIZER]}})
    await store.create(job)

    marked = await store.delete(Job, "team", "held")
    marked.metadata.finalizers = []
    marked.metadata.resource_version = None
    await store.update(marked)

    assert marked.metadata.deletion_timestamp is not None
    assert (await store.list(Job, "team")).items == []


def test_merge_patch_null_removes_finalizers(api):
    create_cluster(api, "nulled", [FINALIZER])
    api.delete(f"{CLUSTER}/nulled")

    response = api.patch(f"{CLUSTER}/nulled", json={"metadata": {"finalizers": None}}, headers=MERGE)

    assert response.status_code == 200, response.text
    assert api.get(f"{CLUSTER}/nulled").status_code == 404
