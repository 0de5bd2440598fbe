"""Object model validation: names, manifests of the original SkyShift, unknown fields, quantities."""

from __future__ import annotations

import pytest
import yaml

from skyshift_core.errors import InvalidError
from skyshift_core.objects import Job, kinds, parse_object, parse_selector, resolve_kind, selector_matches
from skyshift_core.objects.quantity import parse_mebibytes

LEGACY_JOB = """
kind: Job
metadata:
  name: my-batch-job
  labels:
    app: batchjob
spec:
  replicas: 2
  image: ubuntu:latest
  resources:
    cpus: 1
    memory: 128
    A100: 1
  env:
    - HELLO_SKY: "hello_sky"
    - COUNT: 3
  run: 'echo $HELLO_SKY; sleep 300'
  restartPolicy: Never
  volumes:
    data:
      container_dir: /data
      host_path: /srv/data
  placement:
    filters:
    - name: "filter-1"
      match_labels:
        "purpose": "dev"
      match_expressions:
      - key: location
        operator: In
        values: [us-east, us-west]
    preferences:
    - name: prefer-cheap
      match_labels: {cost: low}
      weight: 80
"""


def test_legacy_manifest_applies_unchanged():
    job = parse_object(yaml.safe_load(LEGACY_JOB))
    assert isinstance(job, Job)
    assert job.spec.envs == {"HELLO_SKY": "hello_sky", "COUNT": "3"}
    assert job.spec.restart_policy.value == "Never"
    assert job.spec.resources.memory == 128
    assert job.spec.resources.accelerators == {"A100": 1}
    assert job.spec.resources.gpus == 1
    assert job.spec.volumes["data"].container_dir == "/data"
    assert job.spec.placement.filters[0].match_expressions[0].values == ["us-east", "us-west"]
    assert job.spec.placement.preferences[0].weight == 80


def test_snake_case_restart_policy_accepted():
    manifest = {"kind": "Job", "metadata": {"name": "a"}, "spec": {"restart_policy": "OnFailure"}}
    assert parse_object(manifest).spec.restart_policy.value == "OnFailure"


def test_camel_case_fields_accepted():
    manifest = {"kind": "Job", "metadata": {"name": "a"}, "spec": {"restartPolicy": "Never", "schedulerName": "binpack"}}
    job = parse_object(manifest)
    assert job.spec.scheduler_name == "binpack"


def test_kubernetes_env_list_accepted():
    job = parse_object(
        {"kind": "Job", "metadata": {"name": "a"}, "spec": {"env": [{"name": "A", "value": "1"}, {"B": 2}]}}
    )

    assert job.spec.envs == {"A": "1", "B": "2"}


def test_env_entry_of_other_shape_names_both_forms():
    with pytest.raises(InvalidError) as raised:
        parse_object({"kind": "Job", "metadata": {"name": "a"}, "spec": {"env": [{"name": "A", "valueFrom": {}}]}})

    assert "expected a mapping with one key, like {NAME: value}, or a name and a value" in raised.value.message


def test_env_mapping_accepted():
    manifest = {"kind": "Job", "metadata": {"name": "a"}, "spec": {"envs": {"A": "1"}}}
    assert parse_object(manifest).spec.envs == {"A": "1"}


@pytest.mark.parametrize(
    "spec, fragment",
    [
        pytest.param({"replica": 2}, "unknown field 'replica' (did you mean 'replicas'?)", id="typo-suggests"),
        pytest.param({"resources": {"cpu": 2}}, "unknown resource 'cpu' (did you mean 'cpus'?)", id="resource-typo"),
        pytest.param({"restart_policy": "Sometimes"}, "spec.restart_policy", id="bad-enum-names-field"),
        pytest.param({"replicas": 0}, "spec.replicas: invalid value 0: input should be greater than", id="zero-replicas"),
        pytest.param({"replicas": "two"}, "spec.replicas: invalid value 'two': input should be a valid integer", id="text-replicas"),
        pytest.param(
            {"restart_policy": "Sometimes"},
            "spec.restart_policy: invalid value 'Sometimes': input should be 'Always', 'OnFailure' or 'Never'",
            id="unknown-restart-policy",
        ),
        pytest.param({"ports": [70000]}, "invalid port 70000", id="port-range"),
        pytest.param({"resources": {"memory": "12Qi"}}, "invalid memory '12Qi'", id="bad-quantity"),
        pytest.param({"image": "UPPER CASE"}, "invalid image 'UPPER CASE'", id="bad-image"),
        pytest.param(
            {"placement": {"preferences": [{"match_labels": {"a": "b"}, "weight": 101}]}},
            "spec.placement.preferences.0.weight: invalid value 101: input should be less than or equal to 100",
            id="weight-range",
        ),
        pytest.param(
            {"placement": {"filters": [{"match_expressions": [{"key": "a", "operator": "In"}]}]}},
            "operator In on key 'a' needs at least one value",
            id="in-without-values",
        ),
        pytest.param({"env": [{"A": "1", "B": "2"}]}, "expected a mapping with one key", id="env-list-two-keys"),
        # Field names in other letter case are misspelt fields, not accelerator types requesting GPUs.
        pytest.param({"resources": {"CPUs": 4}}, "unknown resource 'CPUs' (did you mean 'cpus'?)", id="resource-upper-case"),
        pytest.param({"resources": {"Cpus": 2}}, "unknown resource 'Cpus' (did you mean 'cpus'?)", id="resource-capitalized"),
        pytest.param({"resources": {"Memory": "2G"}}, "unknown resource 'Memory' (did you mean 'memory'?)", id="resource-memory-case"),
        pytest.param({"resources": {"GPU": 1}}, "unknown resource 'GPU' (did you mean 'gpus'?)", id="resource-singular-gpu"),
        pytest.param({"resources": {"cpus": "5x"}}, "invalid cpus '5x': expected a number of CPUs", id="cpus-unit"),
        pytest.param(
            {"restart_policy": "Never", "restartPolicy": "Always"},
            "field 'restart_policy' is given more than once, as 'restart_policy' and 'restartPolicy'; keep one spelling",
            id="two-spellings",
        ),
        pytest.param({"env": {"A": "1"}, "envs": {"B": "2"}}, "field 'envs' is given more than once", id="env-and-envs"),
        pytest.param(
            {"resources": {"A100": 2, "accelerators": {"A100": 1}}},
            "accelerator 'A100' is given both as a key (2) and in accelerators (1); keep one of them",
            id="accelerator-twice",
        ),
        pytest.param({"resources": {"cpus": -1}}, "invalid cpus -1: must not be negative", id="cpus-negative"),
        pytest.param(
            {"resources": {"accelerators": "V100:two"}},
            "invalid accelerators 'V100:two': expected a mapping of accelerator type to count",
            id="accelerator-count-text",
        ),
        pytest.param(
            {"resources": {"accelerators": ["V100", "A100"]}},
            "or one type with an optional count such as 'V100:2'",
            id="accelerator-list",
        ),
    ],
)
def test_invalid_job_spec_names_problem(spec, fragment):
    with pytest.raises(InvalidError) as raised:
        parse_object({"kind": "Job", "metadata": {"name": "a"}, "spec": spec})
    assert fragment in raised.value.message


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param(
            {"replicas": "3"},
            "spec.replicas: invalid value '3': input should be a valid integer; write the number without quotes",
            id="quoted-replicas",
        ),
        pytest.param({"replicas": True}, "spec.replicas: invalid value true: input should be a valid integer", id="bool"),
        pytest.param({"replicas": 2.5}, "spec.replicas: invalid value 2.5: input should be a valid integer", id="float"),
        pytest.param(
            {"ports": ["80"]},
            "spec.ports.0: invalid value '80': input should be a valid integer; write the number without quotes",
            id="port",
        ),
        pytest.param(
            {"volumes": {"d": {"container_dir": "/d", "type": "empty_dir", "read_only": "yes"}}},
            "spec.volumes.d.read_only: invalid value 'yes': input should be a valid boolean; write true or false "
            "without quotes",
            id="read-only",
        ),
        pytest.param(
            {"placement": {"preferences": [{"match_labels": {"a": "b"}, "weight": "5"}]}},
            "spec.placement.preferences.0.weight: invalid value '5': input should be a valid integer; write the "
            "number without quotes",
            id="weight",
        ),
        pytest.param(
            {"envs": {"A": None}},
            "spec.envs: environment variable 'A' has no value (null); write an empty string \"\" for an empty value",
            id="env-null",
        ),
    ],
)
def test_wrong_scalar_type_is_not_coerced(spec, message):
    with pytest.raises(InvalidError) as raised:
        parse_object({"kind": "Job", "metadata": {"name": "a"}, "spec": {"run": "true", **spec}})
    assert raised.value.message == f"invalid Job: {message}"


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        pytest.param(
            {"command": ["python", "train.py"]},
            "unknown field 'command' (use 'run': the command line as one shell string, such as run: python "
            "train.py --epochs 3)",
            id="command",
        ),
        pytest.param({"parallelism": 4}, "unknown field 'parallelism' (use 'replicas':", id="parallelism"),
        pytest.param(
            {"nodeSelector": {"a": "b"}}, "unknown field 'nodeSelector' (use 'placement':", id="node-selector"
        ),
        pytest.param(
            {"image": "Ubuntu:Latest"}, "names are lower case: did you mean 'ubuntu:Latest'?", id="image-case"
        ),
        pytest.param(
            {"resources": {"memory": "2gb"}},
            "(did you mean '2Gi', binary as Slurm reads 2G, or '2G', decimal?)",
            id="memory-unit-case",
        ),
    ],
)
def test_other_tools_spelling_gets_the_skyshift_one(spec, fragment):
    with pytest.raises(InvalidError) as raised:
        parse_object({"kind": "Job", "metadata": {"name": "a"}, "spec": spec})
    assert fragment in raised.value.message
    assert "settings of one cluster manager" not in raised.value.message


def test_spec_not_mapping_named_plainly():
    with pytest.raises(InvalidError) as raised:
        parse_object({"kind": "Job", "metadata": {"name": "a", "labels": {"tier": 1}}, "spec": "echo hi"})
    assert raised.value.message == (
        "invalid Job: metadata.labels.tier: invalid value 1: input should be a valid string; quote it to make it "
        "text: \"1\"; spec: expected a mapping of names to values, got the string 'echo hi'"
    )


@pytest.mark.parametrize("api_version", ["v1", "skyshift/v1"])
def test_api_versions_accepted(api_version):
    job = parse_object({"apiVersion": api_version, "kind": "Job", "metadata": {"name": "a"}})

    assert job.api_version == "v1"


def test_unknown_api_version_lists_accepted_ones():
    with pytest.raises(InvalidError) as raised:
        parse_object({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "a"}})

    assert "unsupported api_version 'batch/v1': expected 'v1' or 'skyshift/v1'" in raised.value.message


@pytest.mark.parametrize(
    "resources, cpus, accelerators",
    [
        pytest.param({"cpus": "500m"}, 0.5, {}, id="millicores"),
        pytest.param({"cpus": "2"}, 2.0, {}, id="number-as-text"),
        pytest.param({"cpus": 1.5}, 1.5, {}, id="number"),
        pytest.param({"accelerators": "V100:2"}, 1.0, {"V100": 2}, id="skypilot-type-and-count"),
        pytest.param({"accelerators": "T4"}, 1.0, {"T4": 1}, id="skypilot-type-only"),
        pytest.param({"accelerators": {"A100": 1}}, 1.0, {"A100": 1}, id="mapping"),
    ],
)
def test_resource_spellings_accepted(resources, cpus, accelerators):
    spec = parse_object({"kind": "Job", "metadata": {"name": "a"}, "spec": {"resources": resources}}).spec

    assert spec.resources.cpus == cpus
    assert spec.resources.accelerators == accelerators
    assert spec.resources.gpus == sum(accelerators.values())


@pytest.mark.parametrize(
    "name, valid",
    [
        ("a", True),
        ("my-job-1", True),
        ("a" * 63, True),
        ("a" * 64, False),
        ("My-Job", False),
        ("-job", False),
        ("job_1", False),
        ("job.1", False),
    ],
)
def test_object_names_follow_dns_label_rules(name, valid):
    manifest = {"kind": "Job", "metadata": {"name": name}}
    if valid:
        assert parse_object(manifest).metadata.name == name
    else:
        with pytest.raises(InvalidError, match="metadata.name"):
            parse_object(manifest)


def test_unknown_kind_suggests_closest():
    with pytest.raises(InvalidError, match="did you mean 'Job'"):
        parse_object({"kind": "Jobb", "metadata": {"name": "a"}})


def test_missing_kind_lists_kinds():
    with pytest.raises(InvalidError, match="missing field 'kind'"):
        parse_object({"metadata": {"name": "a"}})


@pytest.mark.parametrize("name", ["A100", "T4", "L40S", "TPU-v4", "A10G", "A100-80GB", "H100"])
def test_accelerator_types_accepted(name):
    job = parse_object({"kind": "Job", "metadata": {"name": "a"}, "spec": {"resources": {name: 2}}})

    assert job.spec.resources.accelerators == {name: 2}
    assert job.spec.resources.gpus == 2


@pytest.mark.parametrize(
    "value, mebibytes",
    [
        (128, 128.0),
        ("128", 128.0),
        ("512Mi", 512.0),
        ("2Gi", 2048.0),
        ("1.5Gi", 1536.0),
        ("2G", 2e9 / 2**20),
        ("1024Ki", 1.0),
    ],
)
def test_memory_quantities(value, mebibytes):
    assert parse_mebibytes(value) == pytest.approx(mebibytes)


def test_every_kind_has_distinct_names():
    plurals = [model.plural for model in kinds().values()]
    assert len(plurals) == len(set(plurals))
    assert sorted(kinds()) == sorted(
        ["Cluster", "Job", "Service", "Endpoints", "Link", "FilterPolicy", "Namespace", "Role", "User", "Event"]
    )


@pytest.mark.parametrize("text", ["jobs", "job", "jb", "Job", "JOBS"])
def test_resolve_kind_aliases(text):
    assert resolve_kind(text) is Job


@pytest.mark.parametrize(
    "selector, labels, expected",
    [
        ("app=web", {"app": "web"}, True),
        ("app==web", {"app": "web"}, True),
        ("app=web,tier!=db", {"app": "web", "tier": "db"}, False),
        ("app=web,tier!=db", {"app": "web"}, True),
        ("env in (a,b)", {"env": "b"}, True),
        ("env in (a, b)", {"env": "c"}, False),
        ("env notin (a,b)", {}, True),
        ("legacy", {"legacy": ""}, True),
        ("!legacy", {"legacy": "x"}, False),
        ("!legacy,app in (web)", {"app": "web"}, True),
    ],
)
def test_label_selector_matching(selector, labels, expected):
    assert selector_matches(parse_selector(selector), labels) is expected


@pytest.mark.parametrize("selector", ["app=", "env in ()", "=web", "a b", "app=web,"])
def test_label_selector_rejects_malformed(selector):
    if selector == "app=":
        # An empty value is valid in Kubernetes: it matches labels whose value is empty.
        assert selector_matches(parse_selector(selector), {"app": ""})
        return
    with pytest.raises(ValueError):
        parse_selector(selector)


def test_job_row_counts_started_replicas():
    job = Job.model_validate(
        {
            "metadata": {"name": "web"},
            "spec": {"run": "serve", "replicas": 4},
            "status": {
                "phase": "Running",
                "placement": {"a": 2, "b": 2},
                "clusters": {
                    "a": {"replica_indices": [0, 1], "tasks": {"0": {"state": "Running"}, "1": {"state": "Succeeded"}}},
                    "b": {"replica_indices": [2, 3], "tasks": {"2": {"state": "Pending"}, "3": {"state": "Failed"}}},
                },
            },
        }
    )

    row = job.table_row()

    assert row["REPLICAS"] == "2/4"
    assert row["RESTARTS"] == "0"
    assert row["CLUSTERS"] == "a:2,b:2"


def test_job_row_backoff_replica_not_ready():
    # Replica 1 waits to restart after its third failure, as a pod in CrashLoopBackOff does.
    tasks = {"0": {"state": "Running", "restarts": 1}, "1": {"state": "Running", "reason": "BackOff", "restarts": 3}}
    job = Job.model_validate(
        {
            "metadata": {"name": "web"},
            "spec": {"replicas": 2},
            "status": {
                "phase": "Running",
                "placement": {"a": 2},
                "clusters": {"a": {"replica_indices": [0, 1], "tasks": tasks}},
            },
        }
    )

    row = job.table_row()

    assert row["REPLICAS"] == "1/2"
    assert row["RESTARTS"] == "4"


def test_backend_setting_at_spec_level_points_to_backend():
    with pytest.raises(ValueError) as caught:
        Job.model_validate({"kind": "Job", "metadata": {"name": "x"}, "spec": {"time_limit": "10:00"}})

    assert "unknown field 'time_limit'" in str(caught.value)
    assert "go under spec.backend.<manager>, for example spec.backend.slurm.time_limit" in str(caught.value)


def test_close_misspelling_gets_no_backend_hint():
    with pytest.raises(ValueError) as caught:
        Job.model_validate({"kind": "Job", "metadata": {"name": "x"}, "spec": {"replica": 2}})

    assert "did you mean 'replicas'?" in str(caught.value)
    assert "spec.backend" not in str(caught.value)
