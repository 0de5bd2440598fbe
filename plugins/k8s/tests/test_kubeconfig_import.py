"""Cluster manifests from kubeconfig contexts, with valid names derived from context names, and the
`skyshift cluster import-kubeconfig --dry-run` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from skyshift_core.cluster_manager import ConfigError
from skyshift_core.objects import Cluster

from skyshift_k8s import KubernetesClusterManager, cluster_name_for_context, import_kubeconfig

EKS = "arn:aws:eks:us-west-2:123456789012:cluster/prod"


def write_kubeconfig(path: Path, contexts: list[str], current: str | None = None) -> Path:
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": name, "context": {"cluster": "c", "user": "u"}} for name in contexts],
        "current-context": current or contexts[0],
    }
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        pytest.param("kind-dev", "kind-dev", id="valid-kept"),
        pytest.param("kind-dev_1", "kind-dev-1", id="underscore"),
        pytest.param("admin@Prod", "admin-prod", id="at-and-upper-case"),
        pytest.param(EKS, "arn-aws-eks-us-west-2-123456789012-cluster-prod", id="eks-arn"),
        pytest.param("gke_my-project_us-central1-a_main", "gke-my-project-us-central1-a-main", id="gke"),
        pytest.param("-edge-", "edge", id="dashes-trimmed"),
    ],
)
def test_cluster_name_for_context(context, expected):
    assert cluster_name_for_context(context) == expected


def test_cluster_name_for_odd_contexts_is_valid():
    long_context = "team/" + "x" * 80
    names = [cluster_name_for_context(context) for context in ("@@@", long_context)]

    assert names[0].startswith("context-")
    assert len(names[1]) == 63
    for name in names:
        Cluster.model_validate({"metadata": {"name": name}, "spec": {"manager": "kubernetes"}})


def test_import_every_context(tmp_path):
    path = write_kubeconfig(tmp_path / "config", ["kind-kind", EKS, "admin@prod"])

    manifests = import_kubeconfig(path)

    assert [manifest["metadata"]["name"] for manifest in manifests] == [
        "kind-kind",
        "arn-aws-eks-us-west-2-123456789012-cluster-prod",
        "admin-prod",
    ]
    for manifest, context in zip(manifests, ["kind-kind", EKS, "admin@prod"], strict=True):
        assert manifest["spec"] == {
            "manager": "kubernetes",
            "config": {"kubeconfig": str(path.resolve()), "context": context},
        }
        Cluster.model_validate(manifest)
        KubernetesClusterManager.validate_config(manifest["spec"]["config"])


def test_import_one_context(tmp_path):
    path = write_kubeconfig(tmp_path / "config", ["kind-kind", "prod_east"])

    (manifest,) = import_kubeconfig(path, "prod_east")

    assert manifest["metadata"]["name"] == "prod-east"
    assert manifest["spec"]["config"]["context"] == "prod_east"


def test_colliding_derived_names_get_hashes(tmp_path):
    path = write_kubeconfig(tmp_path / "config", ["prod-east", "prod_east", "Prod_East"])

    names = [manifest["metadata"]["name"] for manifest in import_kubeconfig(path)]

    assert names[0] == "prod-east"
    assert names[1].startswith("prod-east-")
    assert names[2].startswith("prod-east-")
    assert len(set(names)) == 3


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        pytest.param(lambda p: None, "cannot read kubeconfig", id="missing-file"),
        pytest.param(lambda p: p.write_text("a: [b"), "is not valid YAML", id="invalid-yaml"),
        pytest.param(lambda p: p.write_text("- 1"), "is not a kubeconfig", id="not-a-mapping"),
        pytest.param(lambda p: p.write_text("contexts: []"), "has no contexts", id="no-contexts"),
    ],
)
def test_import_rejects_bad_files(tmp_path, setup, message):
    path = tmp_path / "config"
    setup(path)

    with pytest.raises(ConfigError, match=message):
        import_kubeconfig(path)


def test_import_unknown_context(tmp_path):
    path = write_kubeconfig(tmp_path / "config", ["a", "b"])

    with pytest.raises(ConfigError, match="context 'c' not found in kubeconfig .*; its contexts are: a, b"):
        import_kubeconfig(path, "c")


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "skyshift_core.cli.main", *args],
        capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_cli_dry_run_prints_manifests(tmp_path):
    path = write_kubeconfig(tmp_path / "config", ["kind-kind", EKS])

    result = run_cli("cluster", "import-kubeconfig", "--kubeconfig", str(path), "--dry-run")

    assert result.returncode == 0, result.stderr
    documents = list(yaml.safe_load_all(result.stdout))
    assert [document["metadata"]["name"] for document in documents] == [
        "kind-kind",
        "arn-aws-eks-us-west-2-123456789012-cluster-prod",
    ]
    assert documents[1]["spec"]["config"]["context"] == EKS


def test_cli_reads_kubeconfig_env_and_reports_errors(tmp_path):
    path = write_kubeconfig(tmp_path / "config", ["only"])

    found = run_cli("cluster", "import-kubeconfig", "--dry-run", env={"KUBECONFIG": f"{path}{os.pathsep}/elsewhere"})
    missing = run_cli("cluster", "import-kubeconfig", "--dry-run", "--context", "other", env={"KUBECONFIG": str(path)})

    assert yaml.safe_load(found.stdout)["metadata"]["name"] == "only"
    assert missing.returncode == 1
    assert "Error: context 'other' not found in kubeconfig" in missing.stderr
