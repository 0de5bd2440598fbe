"""kubectl's argument forms in the `skyshift` CLI: KIND/NAME, several kinds separated by commas,
`-o name`, and short options joined to their value by '=' (`-o=yaml`)."""

from __future__ import annotations

import json

import pytest
import yaml
from cli_helpers import cli, client, runner  # noqa: F401

from skyshift_core.cli.common import split_short_option_values
from skyshift_core.cli.main import app
from skyshift_core.client import SkyShiftClient
from skyshift_core.errors import NotFoundError
from typer.main import get_command

THREE_JOBS = """\
kind: Job
metadata: {name: a, labels: {app: web}}
---
kind: Job
metadata: {name: b}
---
kind: Job
metadata: {name: c}
"""


@pytest.fixture
def three_jobs(cli) -> None:
    result = cli("apply", "-f", "-", input=THREE_JOBS)
    assert result.exit_code == 0, result.output


def names_in_table(output: str) -> list[str]:
    return [line.split()[0] for line in output.splitlines()[1:] if line.strip()]


# ---- KIND/NAME ------------------------------------------------------------------------------


def test_get_kind_slash_names(cli, three_jobs):
    result = cli("get", "job/a", "job/c")

    assert result.exit_code == 0, result.output
    assert names_in_table(result.stdout) == ["a", "c"]


def test_get_kind_slash_name_yaml(cli, three_jobs):
    result = cli("get", "jb/b", "-o", "yaml")

    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout)["metadata"]["name"] == "b"


def test_get_kind_slash_missing(cli, three_jobs):
    result = cli("get", "job/a", "job/nope", "-o", "name")

    assert result.exit_code == 1
    assert result.stdout.strip() == "job.skyshift/a"
    assert result.stderr.strip() == 'Error: job "nope" not found in namespace "default"'


def test_describe_kind_slash_name(cli, three_jobs):
    result = cli("describe", "job/b")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].split() == ["Name:", "b"]


def test_describe_every_object_of_kind(cli, three_jobs):
    result = cli("describe", "jobs")

    assert result.exit_code == 0, result.output
    assert [line.split()[1] for line in result.stdout.splitlines() if line.startswith("Name:")] == ["a", "b", "c"]


def test_delete_kind_slash_names(cli, client: SkyShiftClient, three_jobs):
    result = cli("delete", "job/a", "job/b")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ['job.skyshift "a" deleted', 'job.skyshift "b" deleted']
    assert [item["metadata"]["name"] for item in client.list("jobs")["items"]] == ["c"]


def test_delete_output_name(cli, three_jobs):
    result = cli("delete", "job/a", "-o", "name")

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "job.skyshift/a"


def test_explain_kind_slash_name(cli, three_jobs):
    slash = cli("explain", "job/a")
    separate = cli("explain", "job", "a")

    assert slash.exit_code == 0, slash.output
    assert slash.stdout.splitlines()[0].startswith("Job:        default/a (1 replica")
    assert slash.stdout == separate.stdout


def test_logs_kind_slash_name_reaches_job(cli, three_jobs):
    # An unplaced Job has no logs yet: the server's reason, not a usage error.
    result = cli("logs", "job/a")

    assert result.exit_code == 1
    assert "Job default/a is not placed on any cluster yet" in result.stderr
    assert "Usage:" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["get", "job", "a", "cluster/b"],
            "KIND NAME and KIND/NAME cannot be mixed in one command; write every object as KIND/NAME: "
            "'skyshift get job/a cluster/b'",
            id="kind-and-slash",
        ),
        pytest.param(["get", "job/a", "b"], "'b' is not in KIND/NAME form", id="slash-then-bare"),
        pytest.param(["get", "job/"], "invalid argument 'job/': expected KIND/NAME", id="empty-name"),
        pytest.param(["get", "/a"], "invalid argument '/a': expected KIND/NAME", id="empty-kind"),
        pytest.param(["get", "jobs,"], "invalid kind list 'jobs,'", id="trailing-comma"),
        pytest.param(["get", "jobz/a"], "unknown resource type 'jobz'", id="unknown-kind"),
        pytest.param(["delete", "jobs"], "nothing to delete: pass KIND NAME... or KIND/NAME...", id="delete-no-name"),
        pytest.param(["get", "jobs,ns", "-w"], "--watch works with one kind at a time", id="watch-two-kinds"),
    ],
)
def test_kind_argument_errors(cli, args: list[str], message: str):
    result = cli(*args)

    assert result.exit_code == 1
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_names_printed_by_output_name_are_accepted(cli, three_jobs):
    printed = cli("get", "jobs", "-o", "name").stdout.split()

    result = cli("get", *printed, "-o", "name")

    assert printed
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == printed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["explain", "cluster/x"], "explain works only with Jobs, not with Cluster objects",
                     id="explain-cluster"),
        pytest.param(["explain", "job/a", "b"], "'job/a' already names the Job", id="explain-extra-name"),
        pytest.param(["explain", "job"], "no Job name given", id="explain-no-name"),
        pytest.param(["logs", "ns/default"], "logs works only with Jobs, not with Namespace objects", id="logs-namespace"),
    ],
)
def test_job_command_usage_errors(cli, args: list[str], message: str):
    result = cli(*args)

    # The usage box wraps long messages; join its lines before looking for the message.
    text = " ".join(result.output.replace("│", " ").split())
    assert result.exit_code == 2
    assert message in text


# ---- several kinds --------------------------------------------------------------------------


def test_get_two_kinds_two_tables(cli, three_jobs):
    result = cli("get", "jobs,namespaces")

    assert result.exit_code == 0, result.output
    jobs, namespaces = result.stdout.split("\n\n")
    assert jobs.splitlines()[0].split()[:2] == ["NAME", "STATUS"]
    assert names_in_table(jobs) == ["job.skyshift/a", "job.skyshift/b", "job.skyshift/c"]
    assert names_in_table(namespaces) == ["namespace.skyshift/default"]


def test_get_mixed_kind_slash_names(cli, three_jobs):
    result = cli("get", "job/b", "ns/default", "job/a", "-o", "name")

    assert result.exit_code == 0, result.output
    # Grouped by kind in the order each kind first appears, as kubectl groups them.
    assert result.stdout.splitlines() == ["job.skyshift/b", "job.skyshift/a", "namespace.skyshift/default"]


def test_get_two_kinds_json_is_one_list(cli, three_jobs):
    result = cli("get", "jobs,ns", "-o", "json")

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["kind"] == "List"
    assert [(item["kind"], item["metadata"]["name"]) for item in data["items"]] == [
        ("Job", "a"), ("Job", "b"), ("Job", "c"), ("Namespace", "default"),
    ]  # fmt: skip


def test_get_two_kinds_none_found(cli):
    result = cli("get", "jobs,clusters")

    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert result.stderr.strip() == "No resources found in default namespace."


def test_get_two_kinds_one_empty(cli, three_jobs):
    result = cli("get", "clusters,jobs")

    assert result.exit_code == 0, result.output
    # Only kinds with objects get a table, as in kubectl.
    assert names_in_table(result.stdout) == ["job.skyshift/a", "job.skyshift/b", "job.skyshift/c"]


def test_delete_two_kinds_by_name(cli, client: SkyShiftClient, three_jobs):
    client.create({"kind": "Namespace", "metadata": {"name": "a"}})

    result = cli("delete", "jobs,ns", "a")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ['job.skyshift "a" deleted', 'namespace.skyshift "a" deleted']


# ---- -o name, -o=FORMAT ---------------------------------------------------------------------


@pytest.mark.parametrize("args", [["-o=name"], ["-oname"], ["--output=name"], ["-o", "name"]])
def test_get_output_option_forms(cli, three_jobs, args: list[str]):
    result = cli("get", "jobs", *args)

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["job.skyshift/a", "job.skyshift/b", "job.skyshift/c"]


def test_get_output_equals_yaml(cli, three_jobs):
    result = cli("get", "job", "a", "-o=yaml")

    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout)["metadata"]["name"] == "a"


def test_short_options_with_equals(cli, client: SkyShiftClient, three_jobs):
    client.create({"kind": "Namespace", "metadata": {"name": "dev"}})
    client.create({"kind": "Job", "metadata": {"name": "d", "labels": {"app": "web"}}}, namespace="dev")

    result = cli("get", "jobs", "-n=dev", "-l=app=web", "-o=name")

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "job.skyshift/d"


def test_apply_output_name(cli, client: SkyShiftClient):
    result = cli("apply", "-f", "-", "-o=name", input=THREE_JOBS)

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["job.skyshift/a", "job.skyshift/b", "job.skyshift/c"]
    assert client.get("jobs", "c")["metadata"]["name"] == "c"


def test_create_output_name(cli):
    result = cli("create", "namespace", "team", "-o", "name")

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "namespace.skyshift/team"


def test_apply_output_yaml_rejected(cli, client: SkyShiftClient):
    result = cli("apply", "-f", "-", "-o", "yaml", input=THREE_JOBS)

    assert result.exit_code == 1
    assert "invalid output format 'yaml': expected name" in result.stderr
    with pytest.raises(NotFoundError):
        client.get("jobs", "a")


def test_split_short_options_only_with_values():
    command = get_command(app)

    split = split_short_option_values(command, ["-s=http://h:1", "get", "jobs", "-o=name", "-A", "-n", "-x=y"])
    after_separator = split_short_option_values(command, ["logs", "a", "--", "-o=name"])
    flag = split_short_option_values(command, ["logs", "a", "-f=x"])

    # `-n` takes a value, so the `-x=y` after it is that value and stays whole.
    assert split == ["-s", "http://h:1", "get", "jobs", "-o", "name", "-A", "-n", "-x=y"]
    assert after_separator == ["logs", "a", "--", "-o=name"]
    # `-f` of logs is --follow, a flag, so nothing is split.
    assert flag == ["logs", "a", "-f=x"]
