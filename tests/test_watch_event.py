"""WatchEvent: lazy decoding, and the JSON that watch streams send without decoding the object."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from skyshift_core.objects import Event, Job, parse_object
from skyshift_core.store import Store, WatchEvent
from skyshift_core.store.etcd import with_resource_version


def stored(obj) -> bytes:
    return Store._encode(obj)


def job() -> Job:
    return parse_object(
        {"kind": "Job", "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}, "annotations": {"note": "{\"metadata\":{}}"}},
         "spec": {"replicas": 2, "run": "echo '\"metadata\":{'", "resources": {"cpus": 1}}},
        Job,
    )  # fmt: skip


def event() -> Event:
    return parse_object(
        {"kind": "Event", "metadata": {"name": "e", "namespace": "default"}, "reason": "Scheduled",
         "involved_object": {"kind": "Job", "name": "web", "namespace": "default"}},
        Event,
    )  # fmt: skip


@pytest.mark.parametrize("obj", [job(), event()])
def test_object_json_matches_full_encoding(obj):
    event = WatchEvent("MODIFIED", revision=42, model=type(obj), value=stored(obj))
    expected = json.loads(Store._decode(type(obj), stored(obj), 42).model_dump_json())
    assert json.loads(event.object_json()) == expected
    assert json.loads(event.object_json())["metadata"]["resource_version"] == "42"


def test_object_json_leaves_object_undecoded():
    event = WatchEvent("ADDED", revision=7, model=Job, value=stored(job()))
    event.object_json()
    assert event._object is None
    # Reading the object decodes it once, with the revision as its resource_version.
    assert event.object.metadata.resource_version == "7"
    assert event.object is event.object


def test_with_resource_version_empty_metadata():
    assert with_resource_version(b'{"kind":"X","metadata":{}}', 5) == b'{"kind":"X","metadata":{"resource_version":"5"}}'


@pytest.mark.parametrize(
    "value",
    [
        b'{"kind":"X","spec":{"metadata":{"name":"inner"}}}',  # Only a nested metadata.
        b'{"kind":"X","status":{},"metadata":{"name":"a"}}',  # A brace before the top-level metadata.
        b'{"kind":"X"}',
    ],
)
def test_with_resource_version_other_shapes(value):
    assert with_resource_version(value, 5) is None


def test_watch_event_needs_object_or_value():
    with pytest.raises(ValueError, match="needs an object"):
        WatchEvent("ADDED", revision=1)


def raw_put(key: bytes, value: bytes, revision: int) -> SimpleNamespace:
    """An etcd watch event as aetcd delivers it: a put of `value`, the key's first version."""
    kv = SimpleNamespace(key=key, value=value, mod_revision=revision, version=1)
    return SimpleNamespace(kind="PUT", kv=kv, prev_kv=None)


def test_value_from_another_writer_is_decoded():
    store = Store(["127.0.0.1:1"])
    # A Job as an older version stored it, before status.start_time existed.
    old = json.loads(stored(job()))
    del old["status"]["start_time"]
    value = json.dumps(old).encode()

    event = store._watch_event(Job, raw_put(b"/skyshift/jobs/default/web", value, 9), ())

    assert event._object is not None
    assert json.loads(event.object_json())["status"]["start_time"] is None


def test_value_encoded_here_is_sent_as_stored():
    store = Store(["127.0.0.1:1"])
    key, value = b"/skyshift/jobs/default/web", stored(job())
    store._values.put(key, value, 9, encoded=True)

    event = store._watch_event(Job, raw_put(key, value, 9), ())

    assert event._object is None
    assert json.loads(event.object_json())["metadata"]["resource_version"] == "9"
    # The watch's own put of the same revision keeps the mark.
    assert store._values.encoded_here(key, 9)


def test_value_in_flight_is_sent_as_stored():
    # The watch event of this process's own write can arrive before the write's response.
    store = Store(["127.0.0.1:1"])
    key, value = b"/skyshift/jobs/default/web", stored(job())
    store._writing[key] = value

    assert store._watch_event(Job, raw_put(key, value, 9), ())._object is None
    # Other bytes at that key were not encoded by this write.
    assert store._watch_event(Job, raw_put(key, value + b" ", 10), ())._object is not None
