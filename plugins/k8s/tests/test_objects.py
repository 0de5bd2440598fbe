"""Manifests SkyShift sends to Kubernetes: names, labels, resources, node selectors, volumes and the
source of SKYSHIFT_REPLICA_INDEX."""

from __future__ import annotations

import pytest
from skyshift_core.cluster_manager import ClusterManagerError, WorkUnit
from skyshift_core.objects import Job, Resources, Volume

from skyshift_k8s.config import parse_config
from skyshift_k8s.objects import (
    container_resources,
    dns_label,
    kubernetes_namespace,
    label_value,
    replica_index_source,
    share_complete,
    workload_manifests,
    workload_name,
)

CONFIG = parse_config({"kubeconfig": "k", "image_pull_policy": "IfNotPresent"})


def job(restart_policy: str = "Never", replicas: int = 4, **spec) -> Job:
    spec.setdefault("run", "python train.py")
    return Job.model_validate(
        {
            "metadata": {"name": "train", "namespace": "ml", "uid": "0b5c4d3e-uid", "labels": {"team": "vision"}},
            "spec": {"replicas": replicas, "restart_policy": restart_policy, **spec},
        }
    )


def unit(source: Job, indices: tuple[int, ...], generation: int = 7) -> WorkUnit:
    return WorkUnit(source, "kube", indices, source.spec.replicas, generation)


def test_names_are_deterministic_and_short():
    long_job = "a" * 63

    assert workload_name("train", "uid-1") == workload_name("train", "uid-1")
    assert workload_name("train", "uid-1") != workload_name("train", "uid-2")
    assert len(workload_name(long_job, "uid-1")) == 52
    assert len(workload_name(long_job, "uid-1", 12345)) == 52
    assert workload_name("web", "uid-1", 3) == workload_name("web", "uid-1") + "-r3"
    assert kubernetes_namespace("skyshift-", "ml") == "skyshift-ml"
    assert len(kubernetes_namespace("skyshift-", long_job)) == 63
    assert kubernetes_namespace("skyshift-", long_job) != kubernetes_namespace("skyshift-", long_job[:-1] + "b")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("data", "data", id="valid"),
        pytest.param("My_Data", "my-data-", id="cleaned-with-hash"),
        pytest.param("__", "x-", id="nothing-left"),
    ],
)
def test_dns_label(text, expected):
    assert dns_label(text).startswith(expected)
    assert len(dns_label(text)) <= 63


def test_label_value_hashes_invalid_values():
    assert label_value("uid-7") == "uid-7"
    assert label_value("a" * 64).startswith("h-")
    assert len(label_value("a" * 64)) == 42


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        pytest.param({"cpus": 2}, {"cpu": "2"}, id="whole-cpus"),
        pytest.param(
            {"cpus": 0.5, "memory": "1536.5"}, {"cpu": "500m", "memory": "1537Mi"}, id="millicores-and-mebibytes"
        ),
        pytest.param({"cpus": 0.0001}, {"cpu": "1m"}, id="rounded-up-to-one-millicore"),
        pytest.param(
            {"cpus": 1, "disk": "2Gi", "A100": 2},
            {"cpu": "1", "ephemeral-storage": "2048Mi", "nvidia.com/gpu": "2"},
            id="disk-and-gpus",
        ),
        pytest.param({"cpus": 0}, {}, id="nothing"),
    ],
)
def test_container_resources(resources, expected):
    result = container_resources(Resources.model_validate(resources))

    assert result == ({"requests": expected, "limits": expected} if expected else {})


@pytest.mark.parametrize(
    ("restart_policy", "indices", "envs", "run", "expected"),
    [
        pytest.param("Never", (0, 1, 2, 3), {}, "x", "completion-index", id="whole-job"),
        pytest.param("Never", (0, 1), {}, "x", "completion-index", id="first-replicas"),
        pytest.param("OnFailure", (2, 3), {}, "x", "wrapper", id="offset"),
        pytest.param("Never", (0, 3), {}, "x", "wrapper", id="gapped"),
        pytest.param("Never", (1, 3), {}, "", "unset", id="gapped-without-run"),
        pytest.param("Always", (2, 5), {}, "x", "deployment", id="deployment-per-replica"),
        pytest.param("Never", (2,), {"SKYSHIFT_REPLICA_INDEX": "9"}, "x", "job-envs", id="set-by-job"),
    ],
)
def test_replica_index_source(restart_policy, indices, envs, run, expected):
    source = job(restart_policy, envs=envs, run=run)

    assert replica_index_source(unit(source, indices)) == expected


def test_indexed_job_manifest():
    share = unit(job("OnFailure", resources={"cpus": 1, "H100": 1}, ports=[8080]), (1, 3))

    (manifest,) = workload_manifests(share, CONFIG, "kube")

    spec = manifest["spec"]
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert (manifest["apiVersion"], manifest["kind"]) == ("batch/v1", "Job")
    assert manifest["metadata"]["namespace"] == "skyshift-ml"
    assert manifest["metadata"]["annotations"] == {
        "skyshift.io/work-key": share.key,
        "skyshift.io/replica-indices": "1,3",
    }
    assert (spec["completionMode"], spec["completions"], spec["parallelism"], spec["backoffLimit"]) == (
        "Indexed",
        2,
        2,
        3,
    )
    assert spec["template"]["metadata"]["labels"]["team"] == "vision"
    assert pod["restartPolicy"] == "OnFailure"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "H100"}
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]
    assert container["command"][:2] == ["/bin/sh", "-c"]
    assert container["command"][2].endswith("python train.py")
    assert {"name": "SKYSHIFT_CLUSTER_REPLICA_INDICES", "value": "1 3"} in container["env"]


def test_always_share_is_one_deployment_per_replica():
    share = unit(job("Always"), (1, 4, 6))

    manifests = workload_manifests(share, CONFIG, "kube")

    assert [(m["apiVersion"], m["kind"], m["spec"]["replicas"]) for m in manifests] == [("apps/v1", "Deployment", 1)] * 3
    assert [m["metadata"]["name"] for m in manifests] == [workload_name("train", share.key, i) for i in (1, 4, 6)]
    for index, manifest in zip((1, 4, 6), manifests, strict=True):
        selector = manifest["spec"]["selector"]["matchLabels"]
        template = manifest["spec"]["template"]
        env = {entry["name"]: entry.get("value") for entry in template["spec"]["containers"][0]["env"]}
        assert selector == {
            "app.kubernetes.io/managed-by": "skyshift",
            "skyshift.io/cluster": "kube",
            "skyshift.io/work-key": share.key,
            "skyshift.io/replica-index": str(index),
        }
        assert selector.items() <= template["metadata"]["labels"].items()
        assert env["SKYSHIFT_REPLICA_INDEX"] == str(index)
        assert env["SKYSHIFT_REPLICAS"] == "4"
        assert template["metadata"]["annotations"]["skyshift.io/replica-indices"] == str(index)
        assert manifest["metadata"]["annotations"]["skyshift.io/share-replica-indices"] == "1,4,6"
        assert template["spec"]["restartPolicy"] == "Always"


def test_share_complete_needs_every_deployment():
    manifests = workload_manifests(unit(job("Always"), (0, 2, 3)), CONFIG, "kube")
    (indexed_job,) = workload_manifests(unit(job("Never"), (0, 2, 3)), CONFIG, "kube")

    assert share_complete(manifests)
    assert share_complete(list(reversed(manifests)))
    assert not share_complete(manifests[:1] + manifests[2:])
    assert share_complete([indexed_job])


def test_several_accelerator_types_rejected():
    share = unit(job(resources={"A100": 1, "H100": 1}), (0,))

    with pytest.raises(ClusterManagerError, match=r"several types \(A100, H100\)") as raised:
        workload_manifests(share, CONFIG, "kube")
    assert raised.value.retryable is False


def test_volumes_become_host_path_and_empty_dir():
    volumes = {
        "data": {"container_dir": "/data", "host_path": "/srv/data", "read_only": True},
        "Scratch_Space": {"container_dir": "/scratch", "type": "empty_dir"},
    }
    share = unit(job(volumes=volumes), (0,))

    pod = workload_manifests(share, CONFIG, "kube")[0]["spec"]["template"]["spec"]

    by_path = {mount["mountPath"]: mount for mount in pod["containers"][0]["volumeMounts"]}
    sources = {volume["name"]: volume for volume in pod["volumes"]}
    assert sources[by_path["/data"]["name"]]["hostPath"] == {"path": "/srv/data"}
    assert by_path["/data"]["readOnly"] is True
    assert sources[by_path["/scratch"]["name"]]["emptyDir"] == {}
    assert by_path["/scratch"]["name"].startswith("scratch-space-")


def test_unsupported_volume_type_rejected():
    source = job()
    # A kind a newer core might add, built without validation.
    source.spec.volumes["bucket"] = Volume.model_construct(
        container_dir="/bucket", host_path=None, type="s3", read_only=False
    )

    with pytest.raises(ClusterManagerError, match="volume 'bucket' .* has type 's3'") as raised:
        workload_manifests(unit(source, (0,)), CONFIG, "kube")
    assert raised.value.retryable is False
