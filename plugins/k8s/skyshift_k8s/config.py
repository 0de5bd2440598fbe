"""Validation of a Kubernetes cluster's `spec.config`.

`KubernetesClusterManager.validate_config` calls `parse_config`. The API server runs it on every
Cluster write, so it only checks the config's form and never reads files or contacts the cluster:
a kubeconfig that is missing on the skylet's machine shows up later as a not-ready Cluster.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic.alias_generators import to_camel
from skyshift_core.cluster_manager import ConfigError
from skyshift_core.objects.selectors import validate_label_key

# Entry-point name in `skyshift.cluster_managers` (`k8s` is an alias), and the Cluster's spec.manager.
MANAGER_NAME = "kubernetes"
DEFAULT_NAMESPACE_PREFIX = "skyshift-"
# The label that GPU Feature Discovery (part of NVIDIA's GPU operator) puts on GPU nodes.
DEFAULT_ACCELERATOR_LABEL = "nvidia.com/gpu.product"
IMAGE_PULL_POLICIES = ("Always", "IfNotPresent", "Never")
# Kubernetes namespace names have at most 63 characters. A long SkyShift namespace name is shortened
# and ends with a hash (see objects.kubernetes_namespace), which needs room after the prefix.
MAX_NAMESPACE_PREFIX_LENGTH = 40

CONFIG_FIELDS = (
    "kubeconfig",
    "context",
    "in_cluster",
    "namespace_prefix",
    "accelerator_label",
    "image_pull_policy",
)
EXAMPLE = "{kubeconfig: ~/.kube/config, context: kind-kind} or {in_cluster: true}"

# Lower-case letters, digits and '-', not starting with '-': the start of a DNS-1123 label.
_NAMESPACE_PREFIX = re.compile(r"^([a-z0-9][-a-z0-9]*)?$")


@dataclass(frozen=True)
class KubernetesConfig:
    """A validated Kubernetes cluster config.

    Exactly one way to reach the API server is set: `kubeconfig` (with an optional `context`,
    default the file's current context) or `in_cluster` (the pod's service account).
    """

    kubeconfig: str | None = None
    context: str | None = None
    in_cluster: bool = False
    namespace_prefix: str = DEFAULT_NAMESPACE_PREFIX
    accelerator_label: str = DEFAULT_ACCELERATOR_LABEL
    # None leaves the choice to Kubernetes (Always for `:latest` images, IfNotPresent otherwise).
    image_pull_policy: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the normalized config, which `parse_config` accepts again unchanged."""
        return {
            "kubeconfig": self.kubeconfig,
            "context": self.context,
            "in_cluster": self.in_cluster,
            "namespace_prefix": self.namespace_prefix,
            "accelerator_label": self.accelerator_label,
            "image_pull_policy": self.image_pull_policy,
        }

    def describe_source(self) -> str:
        """Name where the credentials come from, for messages."""
        if self.in_cluster:
            return "the in-cluster service account"
        context = f"context {self.context!r}" if self.context else "the current context"
        return f"kubeconfig {self.kubeconfig!r} ({context})"


def parse_config(config: Mapping[str, Any] | None) -> KubernetesConfig:
    """Validate a Kubernetes cluster's `spec.config`; raise ConfigError naming the field."""
    if not isinstance(config, Mapping):
        raise ConfigError(f"invalid Kubernetes cluster config {config!r}: expected a mapping such as {EXAMPLE}")
    values = _known_fields(config)

    kubeconfig = _optional_string(values, "kubeconfig")
    context = _optional_string(values, "context")
    in_cluster = values.get("in_cluster")
    if in_cluster is None:
        in_cluster = False
    if not isinstance(in_cluster, bool):
        raise ConfigError(f"invalid in_cluster {in_cluster!r}: expected true or false")
    if in_cluster and (kubeconfig or context):
        field = "kubeconfig" if kubeconfig else "context"
        raise ConfigError(
            f"{field} is set together with in_cluster: true; use either kubeconfig (and context) "
            "or in_cluster: true, not both"
        )
    if not in_cluster and not kubeconfig:
        if context:
            raise ConfigError(
                f"context {context!r} is set but kubeconfig is missing; set kubeconfig to the file's path"
            )
        raise ConfigError(
            f"missing kubeconfig: set kubeconfig to a kubeconfig file's path, or in_cluster: true when the "
            f"controller manager runs in a pod of that cluster; for example {EXAMPLE}"
        )

    prefix = values.get("namespace_prefix")
    if prefix is None:
        prefix = DEFAULT_NAMESPACE_PREFIX
    if not isinstance(prefix, str) or not _NAMESPACE_PREFIX.match(prefix) or len(prefix) > MAX_NAMESPACE_PREFIX_LENGTH:
        raise ConfigError(
            f"invalid namespace_prefix {prefix!r}: expected at most {MAX_NAMESPACE_PREFIX_LENGTH} lower case letters, "
            f"digits and '-', starting with a letter or digit, such as {DEFAULT_NAMESPACE_PREFIX!r} (or '' for none)"
        )

    label = values.get("accelerator_label")
    if label is None:
        label = DEFAULT_ACCELERATOR_LABEL
    if not isinstance(label, str):
        raise ConfigError(
            f"invalid accelerator_label {label!r}: expected a node label key such as {DEFAULT_ACCELERATOR_LABEL!r}"
        )
    try:
        validate_label_key(label)
    except ValueError as error:
        raise ConfigError(f"invalid accelerator_label: {error}") from error

    policy = values.get("image_pull_policy")
    if policy is not None and policy not in IMAGE_PULL_POLICIES:
        raise ConfigError(f"invalid image_pull_policy {policy!r}: expected one of {', '.join(IMAGE_PULL_POLICIES)}")

    return KubernetesConfig(
        kubeconfig=kubeconfig,
        context=context,
        in_cluster=in_cluster,
        namespace_prefix=prefix,
        accelerator_label=label,
        image_pull_policy=policy,
    )


def _known_fields(config: Mapping[str, Any]) -> dict[str, Any]:
    """Map snake_case and camelCase keys to field names; reject unknown keys with the closest name."""
    by_key = {name: name for name in CONFIG_FIELDS} | {to_camel(name): name for name in CONFIG_FIELDS}
    values: dict[str, Any] = {}
    problems = []
    for key, value in config.items():
        name = by_key.get(key) if isinstance(key, str) else None
        if name is None:
            close = difflib.get_close_matches(str(key), list(by_key), n=1, cutoff=0.6)
            hint = f" (did you mean {by_key[close[0]]!r}?)" if close else ""
            problems.append(f"unknown field {key!r}{hint}")
        elif name in values:
            problems.append(f"field {name!r} is given twice (as snake_case and camelCase)")
        else:
            values[name] = value
    if problems:
        raise ConfigError("; ".join(problems) + f"; valid fields: {', '.join(CONFIG_FIELDS)}")
    return values


def _optional_string(values: dict[str, Any], field: str) -> str | None:
    value = values.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"invalid {field} {value!r}: expected a non-empty string")
    return value
