"""Validation of a Kubernetes cluster's spec.config: accepted configs and their normalized form, and
the message of each rejected config."""

from __future__ import annotations

import pytest
from skyshift_core.cluster_manager import ConfigError

from skyshift_k8s import KubernetesClusterManager, parse_config

DEFAULTS = {
    "kubeconfig": None,
    "context": None,
    "in_cluster": False,
    "namespace_prefix": "skyshift-",
    "accelerator_label": "nvidia.com/gpu.product",
    "image_pull_policy": None,
}

GOOD = [
    ("kubeconfig-only", {"kubeconfig": "/etc/kube/config"}, {"kubeconfig": "/etc/kube/config"}),
    (
        "kubeconfig-and-context",
        {"kubeconfig": "~/.kube/config", "context": "kind-kind"},
        {"kubeconfig": "~/.kube/config", "context": "kind-kind"},
    ),
    ("in-cluster", {"in_cluster": True}, {"in_cluster": True}),
    (
        "every-field",
        {
            "kubeconfig": "k",
            "context": "arn:aws:eks:us-west-2:1:cluster/prod",
            "namespace_prefix": "",
            "accelerator_label": "skyshift.io/accelerator",
            "image_pull_policy": "IfNotPresent",
        },
        {
            "kubeconfig": "k",
            "context": "arn:aws:eks:us-west-2:1:cluster/prod",
            "namespace_prefix": "",
            "accelerator_label": "skyshift.io/accelerator",
            "image_pull_policy": "IfNotPresent",
        },
    ),
    (
        "camel-case",
        {"inCluster": True, "namespacePrefix": "team-", "acceleratorLabel": "gpu", "imagePullPolicy": "Always"},
        {"in_cluster": True, "namespace_prefix": "team-", "accelerator_label": "gpu", "image_pull_policy": "Always"},
    ),
    ("explicit-nulls", {"kubeconfig": "k", "context": None, "image_pull_policy": None}, {"kubeconfig": "k"}),
]


@pytest.mark.parametrize(("config", "expected"), [case[1:] for case in GOOD], ids=[case[0] for case in GOOD])
def test_config_accepted(config, expected):
    normalized = KubernetesClusterManager.validate_config(config)

    assert normalized == {**DEFAULTS, **expected}
    assert KubernetesClusterManager.validate_config(normalized) == normalized


BAD = [
    ("empty", {}, "missing kubeconfig: set kubeconfig to a kubeconfig file's path, or in_cluster: true"),
    ("not-a-mapping", ["kubeconfig"], "invalid Kubernetes cluster config ['kubeconfig']: expected a mapping"),
    ("context-without-kubeconfig", {"context": "kind"}, "context 'kind' is set but kubeconfig is missing"),
    ("both-sources", {"kubeconfig": "k", "in_cluster": True}, "kubeconfig is set together with in_cluster: true"),
    ("context-with-in-cluster", {"context": "c", "in_cluster": True}, "context is set together with in_cluster: true"),
    ("kubeconfig-not-string", {"kubeconfig": 3}, "invalid kubeconfig 3: expected a non-empty string"),
    ("kubeconfig-blank", {"kubeconfig": " "}, "invalid kubeconfig ' ': expected a non-empty string"),
    ("in-cluster-not-bool", {"in_cluster": "yes"}, "invalid in_cluster 'yes': expected true or false"),
    (
        "misspelt-field",
        {"kubeconfig": "k", "namespace_prefx": "a-"},
        "unknown field 'namespace_prefx' (did you mean 'namespace_prefix'?)",
    ),
    (
        "unknown-field",
        {"kubeconfig": "k", "zone": "a"},
        "unknown field 'zone'; valid fields: kubeconfig, context, in_cluster",
    ),
    ("field-twice", {"kubeconfig": "k", "inCluster": False, "in_cluster": False}, "field 'in_cluster' is given twice"),
    ("prefix-upper-case", {"kubeconfig": "k", "namespace_prefix": "Sky-"}, "invalid namespace_prefix 'Sky-'"),
    ("prefix-leading-dash", {"kubeconfig": "k", "namespace_prefix": "-sky"}, "invalid namespace_prefix '-sky'"),
    ("prefix-too-long", {"kubeconfig": "k", "namespace_prefix": "a" * 41}, "expected at most 40 lower case letters"),
    (
        "bad-label",
        {"kubeconfig": "k", "accelerator_label": "gpu type"},
        "invalid accelerator_label: invalid label key 'gpu type'",
    ),
    (
        "bad-pull-policy",
        {"kubeconfig": "k", "image_pull_policy": "Sometimes"},
        "invalid image_pull_policy 'Sometimes': expected one of Always, IfNotPresent, Never",
    ),
]


@pytest.mark.parametrize(("config", "message"), [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_config_rejected(config, message):
    with pytest.raises(ConfigError) as raised:
        parse_config(config)

    assert message in str(raised.value)


def test_manager_constructor_validates():
    with pytest.raises(ConfigError, match="missing kubeconfig"):
        KubernetesClusterManager("kube", {})


def test_validate_config_reads_no_file(tmp_path):
    # The API server validates configs of kubeconfigs that exist only where the skylet runs.
    missing = tmp_path / "absent"

    assert KubernetesClusterManager.validate_config({"kubeconfig": str(missing)})["kubeconfig"] == str(missing)
