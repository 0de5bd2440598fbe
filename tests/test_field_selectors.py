"""Field selectors: parsing the Kubernetes string syntax, and matching objects and their decoded JSON."""

from __future__ import annotations

import pytest

from skyshift_core.objects import Cluster, Job
from skyshift_core.objects.selectors import FieldRequirement, field_value, fields_match, parse_field_selector

FIELDS = ("metadata.name", "metadata.namespace", "status.phase")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(None, (), id="absent"),
        pytest.param("  ", (), id="blank"),
        pytest.param("metadata.name=web", (FieldRequirement("metadata.name", "=", "web"),), id="equals"),
        pytest.param("metadata.name==web", (FieldRequirement("metadata.name", "=", "web"),), id="double-equals"),
        pytest.param("metadata.name!=web", (FieldRequirement("metadata.name", "!=", "web"),), id="not-equals"),
        pytest.param("metadata.name=", (FieldRequirement("metadata.name", "=", ""),), id="empty-value"),
        pytest.param(
            "metadata.name=a,status.phase!=Failed",
            (FieldRequirement("metadata.name", "=", "a"), FieldRequirement("status.phase", "!=", "Failed")),
            id="two-clauses",
        ),
        pytest.param(r"metadata.name=a\,b\=c\\d", (FieldRequirement("metadata.name", "=", "a,b=c\\d"),), id="escapes"),
        pytest.param("metadata.name=a!b", (FieldRequirement("metadata.name", "=", "a!b"),), id="bang-in-value"),
    ],
)
def test_parse_field_selector(text, expected):
    assert parse_field_selector(text, FIELDS) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("spec.run=x", "field label not supported: spec.run; supported fields: " + ", ".join(FIELDS), id="unsupported"),
        pytest.param("metadata.name", "invalid field selector clause 'metadata.name'", id="no-operator"),
        pytest.param("=web", "invalid field selector clause '=web'", id="no-field"),
        pytest.param("metadata.name=a=b", "invalid field selector clause 'metadata.name=a=b'", id="bare-equals-in-value"),
        pytest.param(r"metadata.name=a\x", r"invalid field selector clause 'metadata.name=a\\x'", id="unknown-escape"),
        pytest.param("metadata.name=a\\", "invalid field selector clause 'metadata.name=a\\\\'", id="trailing-backslash"),
        pytest.param("metadata.name=a,,status.phase=x", "empty clause", id="empty-clause"),
    ],
)  # fmt: skip
def test_parse_field_selector_rejects(text, message):
    with pytest.raises(ValueError) as caught:
        parse_field_selector(text, FIELDS)

    assert message in str(caught.value)


def test_field_value_reads_model_and_json_alike():
    job = Job.model_validate({"metadata": {"name": "web", "namespace": "dev"}, "status": {"phase": "Running"}})
    document = job.model_dump(mode="json")

    for path, value in (("metadata.name", "web"), ("metadata.namespace", "dev"), ("status.phase", "Running")):
        assert field_value(job, path) == value
        assert field_value(document, path) == value


def test_cluster_scoped_namespace_reads_empty():
    cluster = Cluster.model_validate({"metadata": {"name": "c1"}, "spec": {"manager": "slurm"}})

    assert field_value(cluster, "metadata.namespace") == ""
    assert fields_match(parse_field_selector("metadata.namespace=", FIELDS), cluster)
    assert not fields_match(parse_field_selector("metadata.namespace!=", FIELDS), cluster)


def test_fields_match_needs_every_clause():
    job = Job.model_validate({"metadata": {"name": "web", "namespace": "dev"}})

    assert fields_match(parse_field_selector("metadata.name=web,metadata.namespace=dev", FIELDS), job)
    assert not fields_match(parse_field_selector("metadata.name=web,metadata.namespace=prod", FIELDS), job)
    assert fields_match((), job)


async def jobs_in(store, layout: dict[str, list[str]]) -> None:
    from skyshift_core.objects import Namespace

    for namespace, names in layout.items():
        await store.create(Namespace(metadata={"name": namespace}))
        for name in names:
            await store.create(Job.model_validate({"metadata": {"name": name, "namespace": namespace}}))


def record_ranges(store, monkeypatch) -> list[tuple[bytes, bytes]]:
    """Record the (start, range end) of every etcd range read that the store makes."""
    ranges: list[tuple[bytes, bytes]] = []
    original = store._range

    async def recording(start, range_end=None, **kwargs):
        ranges.append((start, range_end))
        return await original(start, range_end, **kwargs)

    monkeypatch.setattr(store, "_range", recording)
    return ranges


@pytest.mark.parametrize(
    ("namespace", "selector", "expected", "read"),
    [
        pytest.param("dev", "metadata.name=web", [("dev", "web")], "jobs/dev/web", id="name-in-namespace"),
        pytest.param(None, "metadata.namespace=dev2", [("dev2", "web")], "jobs/dev2/", id="namespace-across-namespaces"),
        pytest.param(None, "metadata.namespace=dev,metadata.name=web2", [("dev", "web2")], "jobs/dev/web2", id="both"),
        pytest.param(None, "metadata.name=web", [("dev", "web"), ("dev2", "web")], "jobs/", id="name-across-namespaces"),
        pytest.param("dev", "metadata.name!=web", [("dev", "web2")], "jobs/dev/", id="not-equal-scans"),
        pytest.param("dev", "metadata.name=absent", [], "jobs/dev/absent", id="no-such-name"),
    ],
)  # fmt: skip
async def test_list_equality_narrows_read(store, monkeypatch, namespace, selector, expected, read):
    """`metadata.name=web` reads one key rather than the kind, and never matches `web2` by prefix."""
    await jobs_in(store, {"dev": ["web", "web2"], "dev2": ["web"]})
    ranges = record_ranges(store, monkeypatch)

    listing = await store.list(Job, namespace, field_selector=parse_field_selector(selector, FIELDS))

    assert [(job.metadata.namespace, job.metadata.name) for job in listing.items] == expected
    start, range_end = ranges[0]
    assert start.decode().endswith(read)
    if not read.endswith("/"):
        assert range_end == start + b"\0"  # Exactly one key.


async def test_watch_by_name_skips_longer_names(store):
    await jobs_in(store, {"dev": ["web", "web2"]})
    selector = parse_field_selector("metadata.name=web", FIELDS)
    events = store.watch(Job, "dev", field_selector=selector)

    first = await anext(events)
    await store.update(Job.model_validate({"metadata": {"name": "web2", "namespace": "dev"}, "spec": {"replicas": 2}}))
    await store.update(Job.model_validate({"metadata": {"name": "web", "namespace": "dev"}, "spec": {"replicas": 3}}))
    second = await anext(events)
    await events.aclose()

    assert (first.type, first.object.metadata.name) == ("ADDED", "web")
    assert (second.type, second.object.metadata.name, second.object.spec.replicas) == ("MODIFIED", "web", 3)
