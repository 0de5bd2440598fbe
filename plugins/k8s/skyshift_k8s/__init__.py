"""SkyShift's Kubernetes backend: the `kubernetes` cluster manager, kubeconfig import and a fake
cluster for tests (`skyshift_k8s.testing`).

The names below are imported on first use, because every `skyshift` command loads this package
through its hook plugin and the Kubernetes client takes a noticeable time to import.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("skyshift-k8s")
except PackageNotFoundError:  # Running from a source tree that was never installed.
    __version__ = "0.0.0"

_EXPORTS = {
    "MANAGER_NAME": "skyshift_k8s.config",
    "KubernetesConfig": "skyshift_k8s.config",
    "parse_config": "skyshift_k8s.config",
    "ExecResult": "skyshift_k8s.exec",
    "cluster_name_for_context": "skyshift_k8s.kubeconfig_import",
    "import_kubeconfig": "skyshift_k8s.kubeconfig_import",
    "KubernetesClusterManager": "skyshift_k8s.manager",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'skyshift_k8s' has no attribute {name!r}")
    return getattr(import_module(module), name)
