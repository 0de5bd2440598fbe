"""The `skyshift` CLI's object commands (apply, create, get, describe, delete) against a real API server."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from cli_helpers import cli, client, runner, write  # noqa: F401
from typer.testing import CliRunner

from skyshift_core.cli.config import ClientConfig, resolve_server
from skyshift_core.cli.main import app
from skyshift_core.cli.tables import human_duration
from skyshift_core.client import DEFAULT_SERVER, SkyShiftClient
from skyshift_core.cli import resources
from skyshift_core.errors import InvalidError, NotFoundError, ServerUnreachableError, UnavailableError
from skyshift_core.objects import Job
from skyshift_core.local.processes import free_port

MANIFESTS = Path(__file__).parent / "manifests"

TWO_JOBS = """\
kind: Job
metadata:
  name: train
  labels: {app: ml, tier: gpu}
spec:
  image: ubuntu:22.04
  run: python train.py
  replicas: 2
---
kind: Job
metadata:
  name: serve
  labels: {app: web}
spec:
  image: nginx:1.25
"""


# ---- apply ----------------------------------------------------------------------------------


def test_apply_multi_document_yaml(cli, client: SkyShiftClient, tmp_path: Path):
    result = cli("apply", "-f", str(write(tmp_path, "jobs.yaml", TWO_JOBS)))

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["job.skyshift/train created", "job.skyshift/serve created"]
    assert client.get("jobs", "train")["spec"]["replicas"] == 2


def test_apply_again_unchanged_then_configured(cli, client: SkyShiftClient, tmp_path: Path):
    path = write(tmp_path, "jobs.yaml", TWO_JOBS)
    cli("apply", "-f", str(path))
    client.patch("jobs", "train", {"status": {"phase": "Running"}}, subresource="status")

    unchanged = cli("apply", "-f", str(path))
    path.write_text(TWO_JOBS.replace("replicas: 2", "replicas: 4"))
    configured = cli("apply", "-f", str(path))

    assert unchanged.stdout.splitlines() == ["job.skyshift/train unchanged", "job.skyshift/serve unchanged"]
    assert configured.stdout.splitlines() == ["job.skyshift/train configured", "job.skyshift/serve unchanged"]
    train = client.get("jobs", "train")
    assert train["spec"]["replicas"] == 4
    assert train["status"]["phase"] == "Running"


def test_apply_from_stdin(cli, client: SkyShiftClient):
    result = cli("apply", "-f", "-", input=TWO_JOBS)

    assert result.exit_code == 0, result.output
    assert "job.skyshift/serve created" in result.stdout
    assert client.get("jobs", "serve")["spec"]["image"] == "nginx:1.25"


def test_apply_json_and_directory(cli, client: SkyShiftClient, tmp_path: Path):
    directory = tmp_path / "manifests"
    directory.mkdir()
    write(directory, "a.json", json.dumps({"kind": "Job", "metadata": {"name": "from-json"}}))
    write(directory, "b.yml", "kind: Job\nmetadata: {name: from-yml}\n")
    write(directory, "notes.txt", "not a manifest")

    result = cli("apply", "-f", str(directory))

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["job.skyshift/from-json created", "job.skyshift/from-yml created"]


def test_apply_comma_separated_files(cli, client: SkyShiftClient, tmp_path: Path):
    first = write(tmp_path, "a.yaml", "kind: Job\nmetadata: {name: from-a}\n")
    second = write(tmp_path, "b.yml", "kind: Job\nmetadata: {name: from-b}\n")

    result = cli("apply", "-f", f"{first},{second}")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["job.skyshift/from-a created", "job.skyshift/from-b created"]


def test_file_name_with_comma_read_whole(cli, client: SkyShiftClient, tmp_path: Path):
    odd = write(tmp_path, "a,b.yaml", "kind: Job\nmetadata: {name: odd}\n")

    result = cli("apply", "-f", str(odd))

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["job.skyshift/odd created"]


def test_apply_namespace_then_job_in_it(cli, client: SkyShiftClient):
    manifest = "kind: Namespace\nmetadata: {name: dev}\n---\nkind: Job\nmetadata: {name: a, namespace: dev}\n"

    result = cli("apply", "-f", "-", input=manifest)

    assert result.exit_code == 0, result.output
    assert client.get("jobs", "a", "dev")["metadata"]["namespace"] == "dev"


def test_apply_rejected_document_applies_nothing(cli, client: SkyShiftClient):
    jobs = [
        {"kind": "Job", "metadata": {"name": name}, "spec": {"run": "true", "replicas": replicas}}
        for name, replicas in (("first-ok", 1), ("too-big", 10000), ("third-ok", 1))
    ]
    # The middle one passes the client's checks; only the API server's limit rejects it.
    result = cli("apply", "-f", "-", input=yaml.safe_dump_all(jobs))

    assert result.exit_code == 1
    assert "Error: <stdin>, document 2 (job.skyshift/too-big): invalid Job 'too-big': spec.replicas: 10000" in (
        result.stderr
    )
    assert result.stderr.splitlines()[-1] == (
        "Error: nothing was applied because 1 of 3 documents would be rejected; fix and run again"
    )
    assert client.list("jobs", "default")["items"] == []


def test_apply_checks_namespace_created_first(cli, client: SkyShiftClient):
    manifest = (
        "kind: Namespace\nmetadata: {name: fresh}\n---\n"
        "kind: Job\nmetadata: {name: a, namespace: fresh}\n---\n"
        "kind: Job\nmetadata: {name: b, namespace: missing}\n"
    )

    result = cli("apply", "-f", "-", input=manifest)

    assert result.exit_code == 1
    assert "document 3 (job.skyshift/b): namespace 'missing' not found" in result.stderr
    with pytest.raises(NotFoundError):
        client.get("namespaces", "fresh")


def test_apply_server_dry_run_stores_nothing(cli, client: SkyShiftClient):
    client.create({"kind": "Job", "metadata": {"name": "old"}, "spec": {"run": "true"}})
    manifest = "kind: Job\nmetadata: {name: old}\nspec: {run: 'false'}\n---\nkind: Job\nmetadata: {name: new}\n"

    result = cli("apply", "--dry-run=server", "-f", "-", input=manifest)

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "job.skyshift/old configured (server dry run)",
        "job.skyshift/new created (server dry run)",
    ]
    assert client.get("jobs", "old", "default")["spec"]["run"] == "true"
    with pytest.raises(NotFoundError):
        client.get("jobs", "new", "default")


def test_apply_unknown_dry_run_mode(cli):
    result = cli("apply", "--dry-run=client", "-f", "-", input="kind: Job\nmetadata: {name: a}\n")

    assert result.exit_code == 2
    assert "expected none or server, got 'client'" in result.stderr


@pytest.fixture
def context_namespace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api_server: str) -> str:
    """A client config whose current context sets the namespace `ctx-ns`, as set-context does."""
    from skyshift_core.cli.config import Context

    config = ClientConfig(tmp_path / "config.yaml", "here", [Context("here", api_server, namespace="ctx-ns")])
    config.save()
    monkeypatch.setenv("SKYSHIFT_CONFIG", str(config.path))
    return "ctx-ns"


def test_context_namespace_yields_to_manifest_namespace(cli, client: SkyShiftClient, context_namespace: str):
    for namespace in (context_namespace, "team-q"):
        client.create({"kind": "Namespace", "metadata": {"name": namespace}})
    manifest = "kind: Job\nmetadata: {name: own, namespace: team-q}\n---\nkind: Job\nmetadata: {name: plain}\n"

    result = cli("apply", "-f", "-", input=manifest)

    assert result.exit_code == 0, result.output
    assert client.get("jobs", "own", "team-q")["metadata"]["namespace"] == "team-q"
    assert client.get("jobs", "plain", context_namespace)["metadata"]["namespace"] == context_namespace
    deleted = cli("delete", "-f", "-", input=manifest)
    assert deleted.exit_code == 0, deleted.output
    assert deleted.output.splitlines() == ['job.skyshift "own" deleted', 'job.skyshift "plain" deleted']


def test_explicit_namespace_still_conflicts_with_manifest(cli, client: SkyShiftClient, context_namespace: str):
    result = cli("apply", "-n", "other", "-f", "-", input="kind: Job\nmetadata: {name: own, namespace: team-q}\n")

    assert result.exit_code == 1
    assert "the object's namespace 'team-q' does not match --namespace 'other'" in result.stderr


def test_apply_invalid_document_names_file_index_field(cli, client: SkyShiftClient, tmp_path: Path):
    bad = TWO_JOBS.replace("image: nginx:1.25", "image: nginx:1.25\n  replicas: 0")
    path = write(tmp_path, "jobs.yaml", bad)

    result = cli("apply", "-f", str(path))

    assert result.exit_code == 1
    assert f"Error: {path}, document 2: invalid Job: spec.replicas:" in result.stderr
    assert "Traceback" not in result.output
    # Nothing is applied when any document is invalid.
    with pytest.raises(NotFoundError):
        client.get("jobs", "train")


def test_apply_unknown_field_suggestion(cli, tmp_path: Path):
    path = write(tmp_path, "job.yaml", "kind: Job\nmetadata: {name: a}\nspec: {imagee: ubuntu}\n")

    result = cli("apply", "-f", str(path))

    assert result.exit_code == 1
    assert "document 1: invalid Job: spec: unknown field 'imagee' (did you mean 'image'?)" in result.stderr


def test_apply_unknown_kind_suggestion(cli):
    result = cli("apply", "-f", "-", input="kind: Jbo\nmetadata: {name: a}\n")

    assert result.exit_code == 1
    assert "Error: <stdin>, document 1: unknown kind 'Jbo' (did you mean 'Job'?)" in result.stderr


def test_apply_invalid_yaml_names_file(cli, tmp_path: Path):
    path = write(tmp_path, "broken.yaml", "kind: Job\nmetadata: [unclosed\n")

    result = cli("apply", "-f", str(path))

    assert result.exit_code == 1
    assert f"Error: {path}: invalid YAML:" in result.stderr


def test_apply_duplicate_key_rejected(cli, client: SkyShiftClient):
    result = cli("apply", "-f", "-", input="kind: Job\nmetadata: {name: twice}\nspec:\n  replicas: 2\n  replicas: 5\n")

    assert result.exit_code == 1
    assert "found duplicate key 'replicas', first given on line 4" in result.stderr
    assert 'in "<stdin>", line 5' in result.stderr
    assert not [job for job in client.list("Job", "default")["items"] if job["metadata"]["name"] == "twice"]


def test_apply_keeps_clock_time_as_text(cli, client: SkyShiftClient):
    manifest = "kind: Job\nmetadata:\n  name: clock\n  annotations: {window: 10:00, day: 2024-01-01}\nspec: {run: 'true'}\n"

    result = cli("apply", "-f", "-", input=manifest)

    assert result.exit_code == 0, result.stderr
    annotations = client.get("Job", "clock", "default")["metadata"]["annotations"]
    assert annotations == {"window": "10:00", "day": "2024-01-01"}


def test_apply_missing_file(cli, tmp_path: Path):
    result = cli("apply", "-f", str(tmp_path / "nope.yaml"))

    assert result.exit_code == 1
    assert "nope.yaml: no such file or directory" in result.stderr


def test_apply_server_error_names_document(cli, tmp_path: Path):
    path = write(tmp_path, "job.yaml", "kind: Job\nmetadata: {name: a, namespace: missing-ns}\n")

    result = cli("apply", "-f", str(path))

    assert result.exit_code == 1
    assert f"Error: {path}, document 1 (job.skyshift/a): namespace 'missing-ns' not found" in result.stderr


def test_apply_legacy_manifests(cli, client: SkyShiftClient):
    result = cli(
        "apply", "-f", str(MANIFESTS / "legacy_job.yaml"), "-f", str(MANIFESTS / "legacy_job_restart_policy.yaml")
    )

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "job.skyshift/legacy-batch-job created",
        "job.skyshift/legacy-hello-world created",
    ]
    batch = client.get("jobs", "legacy-batch-job")["spec"]
    assert batch["restart_policy"] == "Never"
    assert batch["envs"] == {"HELLO_SKY": "hello_sky", "RETRIES": "3"}
    assert batch["resources"]["accelerators"] == {"A100": 1}
    assert batch["resources"]["memory"] == 128
    assert batch["placement"]["filters"][0]["match_expressions"][0]["values"] == ["demo", "prod"]
    hello = client.get("jobs", "legacy-hello-world")["spec"]
    assert hello["restart_policy"] == "OnFailure"
    assert hello["placement"]["filters"][0]["match_labels"] == {"purpose": "dev"}


def test_apply_unreachable_server(runner: CliRunner, tmp_path: Path):
    path = write(tmp_path, "jobs.yaml", TWO_JOBS)
    url = f"http://127.0.0.1:{free_port()}"

    result = runner.invoke(app, ["apply", "--server", url, "-f", str(path)])

    assert result.exit_code == 1
    assert f"Error: cannot reach the SkyShift API server at {url}" in result.stderr
    assert "start it with 'skyshift up' or pass --server" in result.stderr
    assert "Traceback" not in result.output


# ---- create ---------------------------------------------------------------------------------


def test_create_namespace(cli, client: SkyShiftClient):
    result = cli("create", "namespace", "team-a")

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "namespace.skyshift/team-a created"
    assert client.get("namespaces", "team-a")["status"]["phase"] == "Active"


def test_create_file_fails_for_existing(cli, tmp_path: Path):
    path = write(tmp_path, "jobs.yaml", TWO_JOBS)

    first = cli("create", "-f", str(path))
    second = cli("create", "-f", str(path))

    assert first.exit_code == 0, first.output
    assert first.stdout.splitlines() == ["job.skyshift/train created", "job.skyshift/serve created"]
    assert second.exit_code == 1
    assert "(job.skyshift/train): Job 'default/train' already exists" in second.stderr


# ---- get ------------------------------------------------------------------------------------


@pytest.fixture
def two_namespaces(cli, client: SkyShiftClient) -> None:
    cli("apply", "-f", "-", input=TWO_JOBS)
    client.create({"kind": "Namespace", "metadata": {"name": "dev"}})
    client.create({"kind": "Job", "metadata": {"name": "probe", "labels": {"app": "web"}}}, namespace="dev")


def test_get_table_columns(cli, two_namespaces):
    result = cli("get", "jobs")

    lines = result.stdout.splitlines()
    assert result.exit_code == 0, result.output
    assert lines[0].split() == ["NAME", "STATUS", "REPLICAS", "RESTARTS", "CLUSTERS", "AGE"]
    assert lines[1].split()[:5] == ["serve", "Pending", "0/1", "0", "<none>"]
    assert lines[2].split()[:5] == ["train", "Pending", "0/2", "0", "<none>"]
    assert lines[2].split()[5].endswith("s")


def test_get_columns_are_aligned(cli, two_namespaces):
    lines = cli("get", "jobs").stdout.splitlines()

    assert lines[0].index("STATUS") == lines[1].index("Pending") == lines[2].index("Pending")


@pytest.mark.parametrize("alias", ["jobs", "job", "jb", "Job", "JOBS"])
def test_get_kind_aliases(cli, two_namespaces, alias: str):
    result = cli("get", alias, "-o", "name")

    assert result.stdout.splitlines() == ["job.skyshift/serve", "job.skyshift/train"]


def test_get_all_namespaces(cli, two_namespaces):
    result = cli("get", "jobs", "-A")

    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert [line.split()[:2] for line in lines[1:]] == [["default", "serve"], ["default", "train"], ["dev", "probe"]]


def test_get_label_selector(cli, two_namespaces):
    result = cli("get", "jobs", "-A", "-l", "app=web")

    assert [line.split()[:2] for line in result.stdout.splitlines()[1:]] == [["default", "serve"], ["dev", "probe"]]


def test_get_field_selector(cli, two_namespaces):
    result = cli("get", "jobs", "-A", "--field-selector", "metadata.namespace=default,metadata.name!=train")

    assert result.exit_code == 0, result.output
    assert [line.split()[:2] for line in result.stdout.splitlines()[1:]] == [["default", "serve"]]


def test_get_unsupported_field_selector(cli, two_namespaces):
    result = cli("get", "jobs", "--field-selector", "spec.replicas=2")

    assert result.exit_code == 1
    assert "field label not supported: spec.replicas" in result.stderr


def test_get_name_with_selector_rejected(cli, two_namespaces):
    result = cli("get", "job", "serve", "-l", "app=web")

    assert result.exit_code == 1
    assert "a name cannot be combined with --selector or --field-selector" in result.stderr


def test_get_wide_adds_labels(cli, two_namespaces):
    result = cli("get", "jobs", "-o", "wide")

    lines = result.stdout.splitlines()
    assert lines[0].split()[-1] == "LABELS"
    assert lines[2].split()[-1] == "app=ml,tier=gpu"


def test_get_one_as_yaml(cli, two_namespaces):
    result = cli("get", "job", "train", "-o", "yaml")

    data = yaml.safe_load(result.stdout)
    assert data["kind"] == "Job"
    assert data["metadata"]["name"] == "train"
    assert data["spec"]["run"] == "python train.py"


def test_get_list_as_json(cli, two_namespaces):
    result = cli("get", "jobs", "-o", "json")

    data = json.loads(result.stdout)
    assert data["kind"] == "List"
    assert [item["metadata"]["name"] for item in data["items"]] == ["serve", "train"]
    assert data["metadata"]["resource_version"]


def test_get_cluster_scoped_kind(cli, two_namespaces):
    result = cli("get", "ns")

    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "AGE"]
    assert [line.split()[:2] for line in lines[1:]] == [["default", "Active"], ["dev", "Active"]]


def test_get_missing_name(cli, two_namespaces):
    result = cli("get", "job", "nope")

    assert result.exit_code == 1
    assert result.stderr.strip() == 'Error: job "nope" not found in namespace "default"'


def test_get_some_names_missing(cli, two_namespaces):
    result = cli("get", "job", "train", "nope", "-o", "name")

    assert result.exit_code == 1
    assert result.stdout.strip() == "job.skyshift/train"
    assert 'job "nope" not found' in result.stderr


def test_get_empty_namespace(cli):
    result = cli("get", "jobs")

    assert result.exit_code == 0
    assert result.stderr.strip() == "No resources found in default namespace."


def test_get_unknown_kind(cli):
    result = cli("get", "jobz")

    assert result.exit_code == 1
    assert "unknown resource type 'jobz' (did you mean 'jobs'?)" in result.stderr


def test_get_invalid_output_format(cli):
    result = cli("get", "jobs", "-o", "xml")

    assert result.exit_code == 1
    assert "invalid output format 'xml': expected one of wide, yaml, json, name" in result.stderr


def test_get_watch_prints_changes(cli, client: SkyShiftClient):
    client.create({"kind": "Job", "metadata": {"name": "first"}})

    def change_later() -> None:
        time.sleep(0.5)
        client.create({"kind": "Job", "metadata": {"name": "second"}})
        client.delete("jobs", "first")

    writer = threading.Thread(target=change_later)
    writer.start()
    result = cli("get", "jobs", "-w", "--watch-timeout", "2", "-o", "name")
    writer.join()

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["job.skyshift/first", "job.skyshift/second", "job.skyshift/first"]


def test_watch_table_skips_repeated_rows(capsys):
    printer = resources._Printer(Job, None, namespace_column=False)
    job = {
        "kind": "Job",
        "metadata": {"name": "quiet", "namespace": "default", "creation_timestamp": "2020-01-01T00:00:00Z"},
        "spec": {"run": "true"},
    }
    annotated = {**job, "metadata": {**job["metadata"], "annotations": {"seen": "yes"}}}
    running = {**job, "status": {"phase": "Running"}}

    printer.print_items([job], "5", single=False)
    for item in (annotated, job, running, running):
        printer.print_event(item)

    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [["NAME", "STATUS"], ["quiet", "Pending"], ["quiet", "Running"]]


def test_get_watch_yaml_prints_objects_one_by_one(cli, client: SkyShiftClient):
    client.create({"kind": "Job", "metadata": {"name": "listed"}})

    def change_later() -> None:
        time.sleep(0.5)
        client.create({"kind": "Job", "metadata": {"name": "added"}})

    writer = threading.Thread(target=change_later)
    writer.start()
    result = cli("get", "jobs", "-w", "--watch-timeout", "2", "-o", "yaml")
    writer.join()

    assert result.exit_code == 0, result.output
    documents = [document for document in yaml.safe_load_all(result.stdout) if document]
    assert [document["kind"] for document in documents] == ["Job", "Job"]
    assert [document["metadata"]["name"] for document in documents] == ["listed", "added"]


class RestartingServerClient:
    """A client whose watch finds the API server unreachable `failures` times, as while the server
    restarts, then streams one change, and then nothing."""

    def __init__(self, failures: int, error: type[UnavailableError] = ServerUnreachableError, message: str = ""):
        self.failures = failures
        self.error = error
        self.message = message or "cannot reach the SkyShift API server at http://127.0.0.1:9: [Errno 111] Connection refused"
        self.calls = 0

    def watch(self, **request):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error(self.message)
        if self.calls == self.failures + 1:
            return iter([("ADDED", {"kind": "Job", "metadata": {"name": "back", "resource_version": "7"}})])
        time.sleep(0.05)
        return iter([])


def watch_with(client: RestartingServerClient, watch_timeout: float) -> None:
    listing = {"metadata": {"resource_version": "5"}, "items": []}
    resources._watch(client, resources._Printer(Job, "name", False), listing, [], {}, watch_timeout)


def test_watch_waits_for_restarting_server(capsys, monkeypatch):
    monkeypatch.setattr(resources, "WATCH_RETRY_DELAY", 0.01)
    client = RestartingServerClient(failures=3)

    watch_with(client, watch_timeout=1)

    output = capsys.readouterr()
    assert output.out.splitlines() == ["job.skyshift/back"]
    assert output.err.count("Warning: cannot reach the SkyShift API server") == 1
    assert "trying again every 0.01 s for up to 60 s" in output.err


def test_watch_resumes_after_cut_stream(capsys, monkeypatch):
    monkeypatch.setattr(resources, "WATCH_RETRY_DELAY", 0.01)
    message = "the watch on http://127.0.0.1:9/api/v1/jobs was cut: peer closed connection; watch again from the last resource_version"
    client = RestartingServerClient(failures=1, error=UnavailableError, message=message)

    watch_with(client, watch_timeout=1)

    output = capsys.readouterr()
    assert output.out.splitlines() == ["job.skyshift/back"]
    assert output.err == (
        "Warning: the watch on http://127.0.0.1:9/api/v1/jobs was cut: peer closed connection; resuming the watch "
        "from resource_version 5\n"
    )


def test_watch_gives_up_on_unreachable_server(capsys, monkeypatch):
    monkeypatch.setattr(resources, "WATCH_RETRY_DELAY", 0.01)
    monkeypatch.setattr(resources, "WATCH_UNREACHABLE_LIMIT", 0.1)

    with pytest.raises(ServerUnreachableError):
        watch_with(RestartingServerClient(failures=10**6), watch_timeout=30)

    assert capsys.readouterr().err.count("Warning: cannot reach") == 1


# ---- describe -------------------------------------------------------------------------------


def test_describe_shows_conditions_and_events(cli, client: SkyShiftClient):
    created = client.create({"kind": "Job", "metadata": {"name": "train", "labels": {"app": "ml"}},
                             "spec": {"run": "echo one\necho two"}})  # fmt: skip
    now = datetime.now(UTC)
    condition = {"type": "Scheduled", "status": "False", "reason": "NoCluster", "message": "no cluster fits 1 CPU",
                 "last_transition_time": (now - timedelta(minutes=3)).isoformat()}  # fmt: skip
    client.patch("jobs", "train", {"status": {"conditions": [condition]}}, subresource="status")
    for name, reason, minutes_ago, uid in (
        ("train-2", "Retrying", 1, created["metadata"]["uid"]),
        ("train-1", "Pending", 5, created["metadata"]["uid"]),
        ("stale", "OldObject", 2, "another-uid"),
    ):
        client.create({
            "kind": "Event",
            "metadata": {"name": name},
            "involved_object": {"kind": "Job", "name": "train", "namespace": "default", "uid": uid},
            "reason": reason,
            "message": f"{reason} message",
            "type": "Warning" if reason == "Retrying" else "Normal",
            "source": "scheduler",
            "last_timestamp": (now - timedelta(minutes=minutes_ago)).isoformat(),
        })  # fmt: skip

    result = cli("describe", "job", "train")

    assert result.exit_code == 0, result.output
    text = result.stdout
    header = {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in text.splitlines()[:9]}
    assert header["Name"] == "train"
    assert header["Namespace"] == "default"
    assert header["Labels"] == "app=ml"
    assert header["UID"] == created["metadata"]["uid"]
    assert text.splitlines()[0] == "Name:              train"
    assert "  run: |-\n    echo one\n    echo two" in text
    conditions = text.split("Conditions:\n")[1].splitlines()
    assert conditions[0].split() == ["TYPE", "STATUS", "REASON", "MESSAGE", "AGE"]
    assert conditions[1].split()[:3] == ["Scheduled", "False", "NoCluster"]
    assert conditions[1].split()[-1] == "3m"
    events = text.split("Events:\n")[1].splitlines()
    assert events[0].split() == ["TYPE", "REASON", "AGE", "FROM", "MESSAGE"]
    # Oldest first; the event about an earlier object with another uid is left out.
    assert [line.split()[:3] for line in events[1:]] == [["Normal", "Pending", "5m"], ["Warning", "Retrying", "60s"]]


def test_describe_without_events(cli, client: SkyShiftClient):
    client.create({"kind": "Namespace", "metadata": {"name": "dev"}})

    result = cli("describe", "namespace", "dev")

    assert result.exit_code == 0, result.output
    assert "Events:  <none>" in result.stdout
    assert "Namespace:" not in result.stdout  # A cluster-scoped kind has no namespace line.


def test_describe_shows_memory_with_unit(cli, client: SkyShiftClient):
    resources = {"cpus": 1, "memory": "512Mi", "disk": "1.5Gi"}
    client.create({"kind": "Job", "metadata": {"name": "sized"}, "spec": {"run": "x", "resources": resources}})

    result = cli("describe", "job", "sized")

    assert result.exit_code == 0, result.output
    assert "memory: 512Mi" in result.stdout
    assert "disk: 1536Mi" in result.stdout


def test_describe_leaves_out_zero_requests(cli, client: SkyShiftClient):
    resources = {"cpus": 1, "memory": "512Mi"}
    client.create({"kind": "Job", "metadata": {"name": "no-disk"}, "spec": {"run": "x", "resources": resources}})

    result = cli("describe", "job", "no-disk")

    assert result.exit_code == 0, result.output
    assert "memory: 512Mi" in result.stdout
    assert "disk:" not in result.stdout
    assert "gpus:" not in result.stdout


def test_describe_points_to_explain_for_scheduling(cli, client: SkyShiftClient):
    client.create({"kind": "Job", "metadata": {"name": "placed"}, "spec": {"run": "x"}})
    record = {"verdicts": [{"cluster": "a", "feasible": True, "fit_count": 4, "total": 0}], "skipped_scores": ["spread"]}
    client.patch("jobs", "placed", {"status": {"scheduling": record}}, subresource="status")

    result = cli("describe", "job", "placed")

    assert result.exit_code == 0, result.output
    assert "Scheduling:  see skyshift explain job placed" in result.stdout.splitlines()
    assert "fit_count" not in result.stdout
    assert "skipped_scores" not in result.stdout


def test_describe_missing(cli):
    result = cli("describe", "job", "nope")

    assert result.exit_code == 1
    assert 'Error: job "nope" not found in namespace "default"' in result.stderr


# ---- delete ---------------------------------------------------------------------------------


def test_delete_by_names(cli, client: SkyShiftClient):
    cli("apply", "-f", "-", input=TWO_JOBS)

    result = cli("delete", "jobs", "train", "serve")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ['job.skyshift "train" deleted', 'job.skyshift "serve" deleted']
    assert client.list("jobs")["items"] == []


def test_delete_from_file(cli, client: SkyShiftClient, tmp_path: Path):
    path = write(tmp_path, "jobs.yaml", TWO_JOBS)
    cli("apply", "-f", str(path))

    result = cli("delete", "-f", str(path))

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ['job.skyshift "train" deleted', 'job.skyshift "serve" deleted']


def test_delete_from_file_that_no_longer_validates(cli, client: SkyShiftClient, tmp_path: Path):
    client.create({"kind": "Job", "metadata": {"name": "train"}})
    path = write(tmp_path, "job.yaml", "kind: Job\nmetadata: {name: train}\nspec: {replicas: -1}\n")

    result = cli("delete", "-f", str(path))

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == 'job.skyshift "train" deleted'


def test_delete_missing_fails(cli, client: SkyShiftClient):
    client.create({"kind": "Job", "metadata": {"name": "train"}})

    result = cli("delete", "job", "nope", "train")

    assert result.exit_code == 1
    assert 'Error: job "nope" not found in namespace "default"' in result.stderr
    assert result.stdout.strip() == 'job.skyshift "train" deleted'


def test_delete_ignore_not_found(cli):
    result = cli("delete", "job", "nope", "--ignore-not-found")

    assert result.exit_code == 0
    assert result.output == ""


def test_delete_needs_names_or_file(cli):
    result = cli("delete", "jobs")

    assert result.exit_code == 1
    assert "nothing to delete" in result.stderr


# ---- configuration and formatting -----------------------------------------------------------


def test_resolve_server_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    config = ClientConfig(tmp_path / "config.yaml")
    config.set_context("local", "http://127.0.0.1:6001")
    config.save()
    monkeypatch.setenv("SKYSHIFT_CONFIG", str(config.path))
    monkeypatch.delenv("SKYSHIFT_SERVER", raising=False)

    from_config = resolve_server(None)
    monkeypatch.setenv("SKYSHIFT_SERVER", "http://127.0.0.1:6002")
    from_env = resolve_server(None)
    explicit = resolve_server("http://127.0.0.1:6003")

    assert (from_config, from_env, explicit) == (
        "http://127.0.0.1:6001",
        "http://127.0.0.1:6002",
        "http://127.0.0.1:6003",
    )


def test_resolve_server_default_without_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("SKYSHIFT_CONFIG", raising=False)
    monkeypatch.delenv("SKYSHIFT_SERVER", raising=False)

    assert resolve_server(None) == DEFAULT_SERVER


def test_resolve_server_missing_explicit_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SKYSHIFT_CONFIG", str(tmp_path / "missing.yaml"))
    monkeypatch.delenv("SKYSHIFT_SERVER", raising=False)

    with pytest.raises(InvalidError) as raised:
        resolve_server(None)

    path = tmp_path / "missing.yaml"
    assert f"the client config {path}, named by $SKYSHIFT_CONFIG, does not exist" in raised.value.message


def test_config_with_unknown_current_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = write(tmp_path, "config.yaml", "current_context: prod\ncontexts:\n- {name: local, server: http://x:1}\n")
    monkeypatch.setenv("SKYSHIFT_CONFIG", str(path))
    monkeypatch.delenv("SKYSHIFT_SERVER", raising=False)

    with pytest.raises(InvalidError) as raised:
        resolve_server(None)

    assert "current_context 'prod'" in raised.value.message


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (-5, "<invalid>"),
        (-1.5, "0s"),
        (5, "5s"),
        (119, "119s"),
        (180, "3m"),
        (192, "3m12s"),
        (15 * 60, "15m"),
        (5 * 3600 + 30 * 60, "5h30m"),
        (20 * 3600, "20h"),
        (4 * 86400, "4d"),
        (3 * 86400 + 4 * 3600, "3d4h"),
        (30 * 86400, "30d"),
        (3 * 365 * 86400 + 10 * 86400, "3y10d"),
        (9 * 365 * 86400, "9y"),
    ],
)
def test_human_duration_like_kubectl(seconds: float, expected: str):
    assert human_duration(seconds) == expected


def test_apply_of_several_documents_warns_once(cli, client: SkyShiftClient):
    typo = "kind: Job\nmetadata: {name: typo}\nspec:\n  run: 'true'\n  backend:\n    slrum: {partition: debug}\n"
    manifest = typo + "---\nkind: Job\nmetadata: {name: plain}\n"

    result = cli("apply", "-f", "-", input=manifest)

    assert result.exit_code == 0, result.output
    assert result.stderr.count("Warning: spec.backend.slrum: no cluster manager named 'slrum'") == 1


def test_apply_warns_about_manager_typo(cli, client: SkyShiftClient):
    manifest = "kind: Job\nmetadata: {name: typo}\nspec:\n  run: 'true'\n  backend:\n    slrum: {partition: debug}\n"

    result = cli("apply", "-f", "-", input=manifest)

    assert result.exit_code == 0, result.output
    assert "Warning: spec.backend.slrum: no cluster manager named 'slrum' is installed on this API server" in result.stderr
    assert "(did you mean 'slurm'?)" in result.stderr
    assert client.get("Job", "typo", "default")["spec"]["backend"] == {"slrum": {"partition": "debug"}}


def test_apply_without_typo_prints_no_warning(cli):
    manifest = "kind: Job\nmetadata: {name: plain}\nspec:\n  run: 'true'\n  backend:\n    slurm: {partition: debug}\n"

    result = cli("apply", "-f", "-", input=manifest)

    assert result.exit_code == 0, result.output
    assert "Warning" not in result.stderr


def test_get_no_headers(cli, two_namespaces):
    result = cli("get", "jobs", "--no-headers")

    lines = result.stdout.splitlines()
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in lines] == ["serve", "train"]


# ---- leader ---------------------------------------------------------------------------------


def test_leader_constant_matches_controller_manager():
    from skyshift_core.cli.controlplane import CONTROLLER_MANAGER_LEASE
    from skyshift_core.controllers.manager import LEASE_NAME

    assert CONTROLLER_MANAGER_LEASE == LEASE_NAME


def test_leader_without_holder_exits_1(cli):
    result = cli("leader", "nobody-leads")

    assert result.exit_code == 1
    assert "No leader: lease 'nobody-leads' has no holder" in result.stderr


def test_leader_shows_holder(cli, client: SkyShiftClient):
    client.call("POST", "/api/v1/leases/controller-manager/acquire", {"holder": "cm-host-1", "ttl_seconds": 30})
    try:
        table = cli("leader")
        as_json = cli("leader", "-o", "json")
    finally:
        client.call("POST", "/api/v1/leases/controller-manager/release", {"holder": "cm-host-1"})

    assert table.exit_code == 0, table.output
    header, row = table.stdout.splitlines()
    assert header.split() == ["LEASE", "HOLDER", "HELD", "FOR", "TTL", "EXPIRES", "IN"]
    assert row.split()[:2] == ["controller-manager", "cm-host-1"]
    assert row.split()[3] == "30s"
    assert json.loads(as_json.stdout)["holder"] == "cm-host-1"


def test_delete_all_in_namespace(cli, client):
    client.create({"kind": "Namespace", "metadata": {"name": "dev"}})
    for name in ("a", "b"):
        client.create({"kind": "Job", "metadata": {"name": name}, "spec": {"run": "true"}})
    client.create({"kind": "Job", "metadata": {"name": "kept"}, "spec": {"run": "true"}}, namespace="dev")

    result = cli("delete", "jobs", "--all")
    again = cli("delete", "jobs", "--all")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ['job.skyshift "a" deleted', 'job.skyshift "b" deleted']
    assert again.stderr == "No resources found in default namespace.\n"
    assert [item["metadata"]["name"] for item in client.list("Job", "dev")["items"]] == ["kept"]


def test_delete_by_selector(cli, client):
    client.create({"kind": "Job", "metadata": {"name": "web-1", "labels": {"app": "web"}}, "spec": {"run": "true"}})
    client.create({"kind": "Job", "metadata": {"name": "db-1", "labels": {"app": "db"}}, "spec": {"run": "true"}})

    result = cli("delete", "jobs", "-l", "app=web")

    assert result.exit_code == 0, result.output
    assert result.stdout == 'job.skyshift "web-1" deleted\n'
    assert [item["metadata"]["name"] for item in client.list("Job")["items"]] == ["db-1"]


def test_delete_all_with_names_rejected(cli):
    result = cli("delete", "jobs", "a", "--all")

    assert result.exit_code == 1
    assert "--all takes kinds only, without names or -f" in result.stderr


def test_watch_of_missing_object_exits(cli):
    result = cli("get", "job", "nope", "-w", "--watch-timeout", "30")

    assert result.exit_code == 1
    assert result.stderr == "Error: job \"nope\" not found in namespace \"default\"\n"


def test_event_table_ends_with_message(cli, client: SkyShiftClient):
    job = client.create({"kind": "Job", "metadata": {"name": "noted"}})
    long_message = "placed " + "x" * 150
    client.create(
        {
            "kind": "Event",
            "metadata": {"name": "noted-event"},
            "involved_object": {"kind": "Job", "name": "noted", "namespace": "default", "uid": job["metadata"]["uid"]},
            "reason": "Scheduled",
            "message": long_message,
        }
    )

    result = cli("get", "events")

    assert result.exit_code == 0, result.output
    header, row = result.stdout.splitlines()
    assert header.split() == ["NAME", "TYPE", "REASON", "OBJECT", "AGE", "MESSAGE"]
    assert row.endswith(long_message)


@pytest.mark.parametrize(
    ("scores", "header"),
    [({}, ["CLUSTER", "FITS", "PLACED"]), ({"placement": 80}, ["CLUSTER", "FITS", "PLACEMENT", "SCORE", "PLACED"])],
    ids=["unscored", "scored"],
)
def test_explain_shows_score_only_when_scored(scores, header):
    from skyshift_core.cli.jobs import render_explanation

    record = {
        "job": {"namespace": "default", "name": "j", "replicas": 1, "scheduler_name": "default"},
        "phase": "Running",
        "placement": {"a": 1},
        "last_cycle": {
            "message": "placed 1 on a",
            "feasible": [{"cluster": "a", "fit_count": 4, "scores": scores, "total": 80 if scores else 0}],
            "placement": {"a": 1},
        },
    }

    lines = render_explanation(record).splitlines()

    table = lines[lines.index("Feasible clusters:") + 1 :]
    assert table[0].split() == header
    assert table[1].split()[-1] == "1"


@pytest.mark.parametrize("command", [["get"], ["delete"], ["apply"], ["up"], ["config", "set-context"]])
def test_help_names_values_not_python_types(command):
    result = CliRunner().invoke(app, [*command, "--help"])

    assert result.exit_code == 0, result.output
    assert "<" not in result.stdout
    assert "list[" not in result.stdout
    assert "╭" not in result.stdout


def test_help_placeholders():
    text = CliRunner().invoke(app, ["delete", "--help"]).stdout

    assert "-n, --namespace NAMESPACE" in text
    assert "-f, --filename FILE" in text
    assert "--timeout SECONDS" in text
    assert "--all " in text
    assert "--all <bool>" not in text
