"""`skyshift label`, `annotate`, `patch` and `scale` against a real API server: kubectl's forms, outcomes and errors."""

from __future__ import annotations

import json

import pytest
import yaml
from cli_helpers import cli, client, runner, write  # noqa: F401

from skyshift_core.client import SkyShiftClient


@pytest.fixture
def jobs(client: SkyShiftClient) -> None:
    """Jobs web-1 and web-2 (label app=web) and batch (app=batch, annotation owner=ada) in namespace default."""
    for name, app in (("web-1", "web"), ("web-2", "web"), ("batch", "batch")):
        annotations = {"owner": "ada"} if name == "batch" else {}
        client.create(
            {"kind": "Job", "metadata": {"name": name, "labels": {"app": app}, "annotations": annotations}}
        )


@pytest.fixture
def site_a(client: SkyShiftClient) -> None:
    """A cluster-scoped Cluster object, as the scheduling plugin guide labels them."""
    client.create({"kind": "Cluster", "metadata": {"name": "site-a"}, "spec": {"manager": "slurm"}})


def labels_of(client: SkyShiftClient, name: str, kind: str = "jobs") -> dict[str, str]:
    return client.get(kind, name)["metadata"].get("labels") or {}


def annotations_of(client: SkyShiftClient, name: str) -> dict[str, str]:
    return client.get("jobs", name)["metadata"].get("annotations") or {}


# ---- label ----------------------------------------------------------------------------------


def test_label_adds_to_cluster(cli, client: SkyShiftClient, site_a):
    result = cli("label", "cluster", "site-a", "cost=10")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["cluster.skyshift/site-a labeled"]
    assert labels_of(client, "site-a", "clusters") == {"cost": "10"}


def test_label_several_names_and_slash_form(cli, client: SkyShiftClient, jobs):
    by_name = cli("label", "jobs", "web-1", "web-2", "tier=front", "zone=eu")
    by_slash = cli("label", "job/batch", "tier=back")

    assert by_name.exit_code == 0, by_name.output
    assert by_name.stdout.splitlines() == ["job.skyshift/web-1 labeled", "job.skyshift/web-2 labeled"]
    assert labels_of(client, "web-2") == {"app": "web", "tier": "front", "zone": "eu"}
    assert by_slash.exit_code == 0, by_slash.output
    assert labels_of(client, "batch") == {"app": "batch", "tier": "back"}


def test_label_new_value_without_overwrite(cli, client: SkyShiftClient, jobs):
    result = cli("label", "job", "web-1", "app=api", "tier=front")

    assert result.exit_code == 1
    assert "'app' already has a value (web), and --overwrite is false" in result.stderr
    assert "pass --overwrite" in result.stderr
    # No label of the command was applied, not even the one that did not exist yet.
    assert labels_of(client, "web-1") == {"app": "web"}


def test_label_same_value_without_overwrite(cli, client: SkyShiftClient, jobs):
    result = cli("label", "job", "web-1", "app=web")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["job.skyshift/web-1 not labeled"]


def test_label_overwrite(cli, client: SkyShiftClient, jobs):
    result = cli("label", "job", "web-1", "app=api", "--overwrite")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["job.skyshift/web-1 labeled"]
    assert labels_of(client, "web-1") == {"app": "api"}


def test_label_removal(cli, client: SkyShiftClient, jobs):
    result = cli("label", "job", "web-1", "app-")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["job.skyshift/web-1 unlabeled"]
    assert labels_of(client, "web-1") == {}


def test_label_removal_of_missing_key_warns(cli, client: SkyShiftClient, jobs):
    result = cli("label", "job", "web-1", "cost-")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["job.skyshift/web-1 not labeled"]
    assert 'Warning: label "cost" not found on job.skyshift/web-1' in result.stderr
    assert labels_of(client, "web-1") == {"app": "web"}


@pytest.mark.parametrize(
    "argument, expected",
    [
        ("Bad Key=1", "invalid label key 'Bad Key'"),
        ("_tier=1", "invalid label key '_tier'"),
        ("=1", "invalid label key ''"),
        ("tier=two words", "invalid label value 'two words'"),
        ("tier=" + "x" * 64, "invalid label value"),
        ("bad key-", "invalid label key 'bad key'"),
    ],
    ids=["space-in-key", "leading-underscore", "empty-key", "space-in-value", "value-too-long", "removal-bad-key"],
)
def test_label_invalid_argument(cli, client: SkyShiftClient, jobs, argument: str, expected: str):
    result = cli("label", "job", "web-1", "zone=eu", argument)

    assert result.exit_code == 1
    assert expected in result.stderr
    assert "nothing was labeled" in result.stderr
    # The valid label before the invalid one was not sent either.
    assert labels_of(client, "web-1") == {"app": "web"}


@pytest.mark.parametrize(
    "arguments, expected",
    [
        (["job", "web-1", "tier=a", "tier-"], "'tier' is both set and removed"),
        (["job", "web-1", "tier=a", "tier=b"], "'tier' is given twice"),
        (["job", "web-1", "tier=a", "web-2"], "'web-2' comes after the label changes"),
        (["job", "web-1"], "no label change given"),
        (["tier=a"], "no object given"),
        (["jobs", "tier=a"], "no objects picked"),
        (["job", "web-1", "tier=a", "-l", "app=web"], "names cannot be combined"),
        (["jobs", "tier=a", "-l", "app=web", "--all"], "--all cannot be combined with --selector"),
        (["jobs", "web-1", "web-2", "tier=a", "--resource-version", "1"], "--resource-version works with exactly one"),
        (["job", "web-1", "tier=a", "-o", "wide"], "invalid output format 'wide'"),
    ],
    ids=[
        "set-and-remove", "twice", "name-after-change", "no-change", "no-object", "kind-without-selection",
        "names-and-selector", "all-and-selector", "resource-version-several", "bad-output",
    ],
)  # fmt: skip
def test_label_rejected_before_sending(cli, client: SkyShiftClient, jobs, arguments: list[str], expected: str):
    result = cli("label", *arguments)

    assert result.exit_code == 1
    assert expected in result.stderr
    assert labels_of(client, "web-1") == {"app": "web"}


def test_label_by_selector(cli, client: SkyShiftClient, jobs):
    result = cli("label", "jobs", "-l", "app=web", "tier=front")

    assert result.exit_code == 0, result.output
    assert sorted(result.stdout.splitlines()) == ["job.skyshift/web-1 labeled", "job.skyshift/web-2 labeled"]
    assert labels_of(client, "web-1") == {"app": "web", "tier": "front"}
    assert labels_of(client, "batch") == {"app": "batch"}


def test_label_selector_matches_nothing(cli, client: SkyShiftClient, jobs):
    result = cli("label", "jobs", "-l", "app=none", "tier=front")

    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "No resources found in default namespace." in result.stderr


def test_label_all(cli, client: SkyShiftClient, jobs):
    result = cli("label", "jobs", "--all", "cost=3")

    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 3
    assert all(labels_of(client, name)["cost"] == "3" for name in ("web-1", "web-2", "batch"))


def test_label_continues_after_refused_object(cli, client: SkyShiftClient, jobs):
    # app=web is already set on web-1 and web-2, but batch has app=batch: only batch is refused.
    result = cli("label", "jobs", "--all", "app=web")

    assert result.exit_code == 1
    assert "Error: job.skyshift/batch: 'app' already has a value (batch)" in result.stderr
    assert sorted(result.stdout.splitlines()) == ["job.skyshift/web-1 not labeled", "job.skyshift/web-2 not labeled"]
    assert labels_of(client, "batch") == {"app": "batch"}


def test_label_missing_object(cli, client: SkyShiftClient, jobs):
    result = cli("label", "job", "web-1", "nope", "tier=a")

    assert result.exit_code == 1
    assert 'job "nope" not found in namespace "default"' in result.stderr
    assert result.stdout.splitlines() == ["job.skyshift/web-1 labeled"]


def test_label_other_namespace(cli, client: SkyShiftClient):
    client.create({"kind": "Namespace", "metadata": {"name": "team"}})
    client.create({"kind": "Job", "metadata": {"name": "train", "namespace": "team"}})

    result = cli("label", "-n", "team", "job", "train", "tier=gpu")

    assert result.exit_code == 0, result.output
    assert client.get("jobs", "train", "team")["metadata"]["labels"] == {"tier": "gpu"}


@pytest.mark.parametrize("output", ["name", "yaml", "json"])
def test_label_output_formats(cli, client: SkyShiftClient, jobs, output: str):
    result = cli("label", "job", "web-1", "tier=front", "-o", output)

    assert result.exit_code == 0, result.output
    if output == "name":
        assert result.stdout.splitlines() == ["job.skyshift/web-1"]
    else:
        printed = yaml.safe_load(result.stdout) if output == "yaml" else json.loads(result.stdout)
        assert printed["metadata"]["labels"] == {"app": "web", "tier": "front"}


def test_label_resource_version_current(cli, client: SkyShiftClient, jobs):
    version = client.get("jobs", "web-1")["metadata"]["resource_version"]

    result = cli("label", "job/web-1", "tier=front", "--resource-version", version)

    assert result.exit_code == 0, result.output
    assert labels_of(client, "web-1") == {"app": "web", "tier": "front"}


def test_label_resource_version_conflict(cli, client: SkyShiftClient, jobs):
    stale = client.get("jobs", "web-1")["metadata"]["resource_version"]
    client.patch("jobs", "web-1", {"metadata": {"labels": {"zone": "eu"}}})

    result = cli("label", "job", "web-1", "tier=front", "--resource-version", stale)

    assert result.exit_code == 1
    assert f"resource_version {stale} was requested" in result.stderr
    assert labels_of(client, "web-1") == {"app": "web", "zone": "eu"}


# ---- annotate -------------------------------------------------------------------------------


def test_annotate_adds_free_text(cli, client: SkyShiftClient, jobs):
    result = cli("annotate", "job", "web-1", "note=runs nightly; owner=ml team", "example.com/ticket=42")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["job.skyshift/web-1 annotated"]
    assert annotations_of(client, "web-1") == {"note": "runs nightly; owner=ml team", "example.com/ticket": "42"}


def test_annotate_existing_key_without_overwrite(cli, client: SkyShiftClient, jobs):
    # As in kubectl, an existing annotation is refused even when the value would stay the same.
    result = cli("annotate", "job", "batch", "owner=ada")

    assert result.exit_code == 1
    assert "'owner' already has a value (ada), and --overwrite is false" in result.stderr


def test_annotate_overwrite_and_remove(cli, client: SkyShiftClient, jobs):
    overwritten = cli("annotate", "job", "batch", "owner=grace", "--overwrite")
    removed = cli("annotate", "job", "batch", "owner-")

    assert overwritten.exit_code == 0, overwritten.output
    assert overwritten.stdout.splitlines() == ["job.skyshift/batch annotated"]
    assert removed.exit_code == 0, removed.output
    assert annotations_of(client, "batch") == {}


def test_annotate_invalid_key(cli, client: SkyShiftClient, jobs):
    result = cli("annotate", "job", "batch", "bad key=x")

    assert result.exit_code == 1
    assert "invalid label key 'bad key'" in result.stderr
    assert "annotation keys follow the rules of label keys" in result.stderr


def test_annotate_by_selector(cli, client: SkyShiftClient, jobs):
    result = cli("annotate", "jobs", "-l", "app=web", "reviewed=yes")

    assert result.exit_code == 0, result.output
    assert annotations_of(client, "web-2") == {"reviewed": "yes"}
    assert annotations_of(client, "batch") == {"owner": "ada"}


# ---- patch ----------------------------------------------------------------------------------


def test_patch_merge(cli, client: SkyShiftClient, jobs):
    result = cli("patch", "job", "web-1", "-p", '{"spec": {"replicas": 3}, "metadata": {"labels": {"app": null}}}')

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["job.skyshift/web-1 patched"]
    job = client.get("jobs", "web-1")
    assert job["spec"]["replicas"] == 3
    assert job["metadata"].get("labels") in (None, {})


def test_patch_merge_yaml_text(cli, client: SkyShiftClient, jobs):
    result = cli("patch", "job/web-1", "-p", "spec: {replicas: 4}")

    assert result.exit_code == 0, result.output
    assert client.get("jobs", "web-1")["spec"]["replicas"] == 4


def test_patch_no_change(cli, client: SkyShiftClient, jobs):
    cli("patch", "job", "web-1", "-p", '{"spec": {"replicas": 2}}')

    again = cli("patch", "job", "web-1", "-p", '{"spec": {"replicas": 2}}')

    assert again.exit_code == 0, again.output
    assert again.stdout.splitlines() == ["job.skyshift/web-1 patched (no change)"]


@pytest.mark.parametrize(
    ("patch_type", "patch"),
    [
        ("merge", '{"status": {"phase": "Succeeded"}}'),
        ("json", '[{"op": "replace", "path": "/status/phase", "value": "Failed"}]'),
    ],
)
def test_patch_of_status_warns_it_is_ignored(cli, client: SkyShiftClient, jobs, patch_type: str, patch: str):
    result = cli("patch", "job", "web-1", "--type", patch_type, "-p", patch)

    assert result.exit_code == 0, result.output
    assert "Warning: the patch changes status, which only the controllers write" in result.stderr
    assert client.get("jobs", "web-1")["status"]["phase"] == "Pending"


def test_patch_of_spec_does_not_warn(cli, jobs):
    result = cli("patch", "job", "web-1", "-p", '{"spec": {"replicas": 3}}')

    assert result.exit_code == 0, result.output
    assert "Warning" not in result.stderr


def test_patch_json(cli, client: SkyShiftClient, jobs):
    operations = json.dumps(
        [
            {"op": "replace", "path": "/spec/replicas", "value": 5},
            {"op": "add", "path": "/metadata/labels/tier", "value": "front"},
        ]
    )

    result = cli("patch", "job", "web-1", "--type", "json", "-p", operations)

    assert result.exit_code == 0, result.output
    job = client.get("jobs", "web-1")
    assert job["spec"]["replicas"] == 5
    assert job["metadata"]["labels"] == {"app": "web", "tier": "front"}


def test_patch_file(cli, client: SkyShiftClient, jobs, tmp_path):
    path = write(tmp_path, "patch.yaml", "spec:\n  replicas: 6\n")

    result = cli("patch", "job", "web-1", "--patch-file", str(path), "-o", "name")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["job.skyshift/web-1"]
    assert client.get("jobs", "web-1")["spec"]["replicas"] == 6


@pytest.mark.parametrize(
    "options, expected",
    [
        (["-p", '{"spec": '], "the patch from -p is neither valid JSON nor valid YAML"),
        (["-p", ""], "the patch from -p is empty"),
        (["-p", "[1, 2]"], "a merge patch must be a mapping"),
        (["--type", "json", "-p", '{"spec": {}}'], "a JSON patch (--type json) must be a list of operations"),
        (["--type", "json", "-p", '["replace"]'], "operation 0 of the JSON patch from -p is a str"),
        (["--type", "strategic", "-p", "{}"], "SkyShift has no strategic merge patch"),
        ([], "exactly one of -p PATCH and --patch-file FILE"),
    ],
    ids=["truncated-json", "empty", "merge-list", "json-mapping", "json-operation-string", "strategic", "no-patch"],
)
def test_patch_bad_document(cli, client: SkyShiftClient, jobs, options: list[str], expected: str):
    result = cli("patch", "job", "web-1", *options)

    assert result.exit_code == 1
    assert expected in result.stderr
    assert client.get("jobs", "web-1")["spec"].get("replicas", 1) == 1


@pytest.mark.parametrize(
    "options, expected",
    [
        (["-p", '{"spec": {"replicas": "many"}}'], "replicas"),
        (["--type", "json", "-p", '[{"op": "remove", "path": "/spec/nope"}]'], "operation 0"),
    ],
    ids=["invalid-field", "json-op-fails"],
)
def test_patch_server_rejects(cli, client: SkyShiftClient, jobs, options: list[str], expected: str):
    result = cli("patch", "job", "web-1", *options)

    assert result.exit_code == 1
    assert result.stderr.startswith("Error: job.skyshift/web-1: ")
    assert expected in result.stderr


def test_patch_missing_object(cli, jobs):
    result = cli("patch", "job", "nope", "-p", '{"spec": {"replicas": 2}}')

    assert result.exit_code == 1
    assert 'job "nope" not found in namespace "default"' in result.stderr


def test_patch_needs_a_name(cli, jobs):
    result = cli("patch", "jobs", "-p", '{"spec": {"replicas": 2}}')

    assert result.exit_code == 1
    assert "nothing to patch" in result.stderr


# ---- scale ----------------------------------------------------------------------------------


def test_scale_sets_replicas(cli, client: SkyShiftClient, jobs):
    result = cli("scale", "job/web-1", "job/web-2", "--replicas", "3")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["job.skyshift/web-1 scaled", "job.skyshift/web-2 scaled"]
    assert client.get("jobs", "web-1")["spec"]["replicas"] == 3
    assert client.get("jobs", "web-2")["spec"]["replicas"] == 3


def test_scale_current_replicas_mismatch(cli, client: SkyShiftClient, jobs):
    result = cli("scale", "job", "batch", "--replicas", "4", "--current-replicas", "2")

    assert result.exit_code == 1
    assert (
        "Error: job.skyshift/batch: expected --current-replicas 2, but spec.replicas is 1; nothing changed"
        in result.stderr
    )
    assert client.get("jobs", "batch")["spec"]["replicas"] == 1


def test_scale_rejects_kind_without_replicas(cli, site_a):
    result = cli("scale", "cluster", "site-a", "--replicas", "2")

    assert result.exit_code == 1
    assert "kind Cluster has no replicas to scale; skyshift scale works on Jobs" in result.stderr
