"""Requests the clients build from model objects: the same path and JSON document as from their dicts."""

from __future__ import annotations

import json

import pytest

from skyshift_core.client import _ClientBase
from skyshift_core.objects import Cluster, Event, Job, utc_now


def job() -> Job:
    return Job.model_validate(
        {
            "kind": "Job",
            "metadata": {"name": "j1", "namespace": "team-a", "resource_version": "42", "labels": {"owner": "zoe"}, "annotations": {"note": "zoë"}},
            "spec": {"run": "echo ünïcode", "replicas": 2, "resources": {"cpus": 0.5, "memory": 512}},
            "status": {"placement": {"c1": 2}},
        }
    )


def event() -> Event:
    now = utc_now()
    return Event.model_validate(
        {
            "kind": "Event",
            "metadata": {"name": "e1", "namespace": "team-a"},
            "involved_object": {"kind": "Job", "name": "j1"},
            "reason": "Scheduled",
            "message": "placed 2 on c1",
            "type": "Normal",
            "source": "scheduler",
            "first_timestamp": now,
            "last_timestamp": now,
        }
    )


def cluster() -> Cluster:
    return Cluster.model_validate({"kind": "Cluster", "metadata": {"name": "c1"}, "spec": {"manager": "slurm"}})


CASES = [
    ("create job", lambda client, obj, ns: client._create_request(obj, ns), job, None),
    ("create job in namespace", lambda client, obj, ns: client._create_request(obj, ns), job, "team-b"),
    ("create event", lambda client, obj, ns: client._create_request(obj, ns), event, None),
    ("create cluster", lambda client, obj, ns: client._create_request(obj, ns), cluster, None),
    ("update job", lambda client, obj, ns: client._update_request(obj, ns, None), job, None),
    ("update job status", lambda client, obj, ns: client._update_request(obj, ns, "status"), job, None),
    ("update cluster status", lambda client, obj, ns: client._update_request(obj, ns, "status"), cluster, None),
]


@pytest.mark.parametrize(("build", "make", "namespace"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_object_request_matches_dict_request(build, make, namespace):
    client = _ClientBase()
    obj = make()

    from_object = build(client, obj, namespace)
    from_dict = build(client, obj.model_dump(mode="json"), namespace)

    assert (from_object.method, from_object.path) == (from_dict.method, from_dict.path)
    assert from_object.headers == from_dict.headers
    assert json.loads(from_object.body) == json.loads(from_dict.body)
