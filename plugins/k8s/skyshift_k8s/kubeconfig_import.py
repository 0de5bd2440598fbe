"""Cluster manifests from the contexts of a kubeconfig file, for `skyshift cluster import-kubeconfig`.

Each context becomes a Cluster with `spec.manager: kubernetes` whose config names the kubeconfig
(as an absolute path) and the context. Context names are often not valid object names, such as
`kind-dev_1`, `arn:aws:eks:us-west-2:123456789012:cluster/prod` or `admin@prod`. Those contexts get
a derived name, and the config keeps the original context.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from skyshift_core.cluster_manager import ConfigError

from skyshift_k8s.config import MANAGER_NAME
from skyshift_k8s.objects import MAX_NAME_LENGTH, short_hash

DEFAULT_KUBECONFIG = Path("~/.kube/config")
_VALID_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_HASH_LENGTH = 6


def default_kubeconfig_path() -> Path:
    """Return the kubeconfig that kubectl reads: the first file in $KUBECONFIG, else ~/.kube/config."""
    for entry in os.environ.get("KUBECONFIG", "").split(os.pathsep):
        if entry.strip():
            return Path(entry.strip()).expanduser()
    return DEFAULT_KUBECONFIG.expanduser()


def cluster_name_for_context(context: str) -> str:
    """Return `context` when it is a valid Cluster name, else a valid name derived from it.

    The derived name is lower case, every run of other characters becomes '-', and it is cut to
    63 characters with a hash of the context at the end when it is too long, for example
    `arn:aws:eks:us-west-2:123456789012:cluster/prod` becomes `arn-aws-eks-us-west-2-123456789012-cluster-prod`."""
    if _VALID_NAME.match(context) and len(context) <= MAX_NAME_LENGTH:
        return context
    name = re.sub(r"[^a-z0-9]+", "-", context.lower()).strip("-")
    if not name:
        return f"context-{short_hash(context, _HASH_LENGTH)}"
    if len(name) > MAX_NAME_LENGTH:
        name = f"{name[: MAX_NAME_LENGTH - _HASH_LENGTH - 1].rstrip('-')}-{short_hash(context, _HASH_LENGTH)}"
    return name


def read_contexts(path: Path) -> tuple[list[str], str | None]:
    """Return the context names of a kubeconfig file and its current context; raise ConfigError."""
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ConfigError(f"cannot read kubeconfig {str(path)!r}: {error.strerror or error}") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"kubeconfig {str(path)!r} is not valid YAML: {error}") from error
    if not isinstance(document, dict):
        raise ConfigError(f"kubeconfig {str(path)!r} is not a kubeconfig: expected a mapping with contexts")
    names = []
    for entry in document.get("contexts") or []:
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(name, str) and name:
            names.append(name)
    current = document.get("current-context")
    return names, current if isinstance(current, str) and current else None


def import_kubeconfig(path: str | os.PathLike[str], context: str | None = None) -> list[dict[str, Any]]:
    """Return a Cluster manifest for each context of the kubeconfig at `path`, or only for `context`.

    Names are derived with `cluster_name_for_context`; when two contexts would get the same name,
    each derived one gets a hash of its context appended. Raises ConfigError for a missing or
    invalid file, a file without contexts, or an unknown `context`."""
    kubeconfig = Path(path).expanduser().resolve()
    contexts, _ = read_contexts(kubeconfig)
    if not contexts:
        raise ConfigError(f"kubeconfig {str(kubeconfig)!r} has no contexts; add one with kubectl config set-context")
    if context is not None and context not in contexts:
        raise ConfigError(
            f"context {context!r} not found in kubeconfig {str(kubeconfig)!r}; its contexts are: {', '.join(contexts)}"
        )

    names = {entry: cluster_name_for_context(entry) for entry in contexts}
    counts: dict[str, int] = {}
    for name in names.values():
        counts[name] = counts.get(name, 0) + 1
    for entry, name in names.items():
        if counts[name] > 1 and name != entry:
            names[entry] = f"{name[: MAX_NAME_LENGTH - _HASH_LENGTH - 1].rstrip('-')}-{short_hash(entry, _HASH_LENGTH)}"

    selected = [context] if context is not None else contexts
    return [
        {
            "api_version": "v1",
            "kind": "Cluster",
            "metadata": {"name": names[entry]},
            "spec": {"manager": MANAGER_NAME, "config": {"kubeconfig": str(kubeconfig), "context": entry}},
        }
        for entry in selected
    ]
