"""Checks that the API server runs before a write, beyond the object model's own validation.

A Job's replica count has an upper bound, checked here rather than in the model so that a Job
stored before the bound existed can still be read. A Cluster's `spec.config` and a Job's `spec.backend.<manager>` sections are validated by the
named cluster manager plugin when it is installed on the API server, so a config error is a clear
4xx on `skyshift apply` rather than a failure inside a controller. When the plugin is not installed
here the object is accepted, and the skylet reports the problem on the Cluster's status. The
name then gets a warning, which names the closest installed manager, as a likely typo, when
there is one. The response carries warnings in a `Warning` header as Kubernetes' admission
warnings do.

A plugin method that raises anything but ConfigError has a bug. The request then fails with a
500 PluginError that names the plugin, its distribution, the method and the exception, as
Kubernetes names a failing admission webhook, and the traceback is logged here.
"""

from __future__ import annotations

import logging

from skyshift_core.cluster_manager import ClusterManager, ConfigError
from skyshift_core.errors import InvalidError, PluginError
from skyshift_core.auth.rbac import unserved_resources
from skyshift_core.objects import Cluster, Job, Object, Role
from skyshift_core.objects.base import suggest
from skyshift_core.plugins import PluginCatalog, default_catalog, describe_error

logger = logging.getLogger(__name__)

MANAGER_GROUP = "skyshift.cluster_managers"
# The status of every replica is kept in its Job, and etcd takes at most about 1.5 MiB per object
# by default. A running Slurm replica's status took 130 bytes of JSON in a measurement (message
# "Slurm job 123456_7 is RUNNING on node-007"), so 5,000 replicas take about 650 KiB.
MAX_REPLICAS = 5000


def _manager_class(name: str, catalog: PluginCatalog) -> type[ClusterManager] | None:
    try:
        return catalog.load_driver(MANAGER_GROUP, name)
    except PluginError as error:
        logger.debug("Cluster manager %r is not usable on this API server: %s", name, error.message)
        return None


def _not_installed_warning(field: str, name: str, unchecked: str, catalog: PluginCatalog) -> list[str]:
    """Return a warning that `name` is no cluster manager installed here, so `unchecked` was not validated.

    The object is still accepted: plugins may be installed only where the controller manager runs."""
    installed = sorted({entry.name for entry in catalog.entries(MANAGER_GROUP) if entry.error is None})
    hint = suggest(name, installed)
    return [
        f"{field}: no cluster manager named {name!r} is installed on this API server{hint}, so {unchecked} "
        f"was not checked; installed: {', '.join(installed) or 'none'}"
    ]


def _plugin_failure(
    manager: str, method: str, obj: Object, field: str, error: Exception, catalog: PluginCatalog
) -> PluginError:
    """Log a plugin method's unexpected exception with its traceback and return the error for the client.

    `field` is the part of `obj` that the method was checking, such as `spec.config`."""
    entry = next((entry for entry in catalog.entries(MANAGER_GROUP) if entry.name == manager), None)
    source = f" from {entry.distribution} {entry.version}" if entry is not None else ""
    reference = obj.metadata.name if obj.metadata.namespace is None else f"{obj.metadata.namespace}/{obj.metadata.name}"
    checked = f"{field} of {obj.kind} {reference!r}"
    message = (
        f"cluster manager plugin {manager!r}{source} failed in {method} while checking {checked}: "
        f"{describe_error(error)}; this is a bug in the plugin, not a mistake in the {obj.kind}: report it "
        "to the plugin's authors, or fix or uninstall the plugin where the API server runs"
    )
    logger.error(
        "Cluster manager plugin %r%s raised in %s while checking %s; the request fails with 500",
        manager, source, method, checked, exc_info=error,
    )  # fmt: skip
    details = {"group": MANAGER_GROUP, "name": manager, "method": method}
    if entry is not None:
        details.update(distribution=entry.distribution, version=entry.version)
    return PluginError(message, details=details)


def admit(obj: Object, catalog: PluginCatalog | None = None) -> list[str]:
    """Raise InvalidError naming the field when a plugin rejects the object, or PluginError when a
    plugin fails; return warnings for the client. `catalog` defaults to the installed plugins."""
    catalog = catalog if catalog is not None else default_catalog()
    name = obj.metadata.name
    if isinstance(obj, Cluster):
        manager_class = _manager_class(obj.spec.manager, catalog)
        if manager_class is None:
            return _not_installed_warning("spec.manager", obj.spec.manager, "spec.config", catalog)
        try:
            manager_class.validate_config(obj.spec.config)
        except ConfigError as error:
            raise InvalidError(f"invalid Cluster {name!r}: spec.config: {error}") from error
        except Exception as error:
            raise _plugin_failure(obj.spec.manager, "validate_config", obj, "spec.config", error, catalog) from error
        return []

    if isinstance(obj, Role):
        return [f"Role {name!r}: {warning}" for warning in unserved_resources(obj.spec.rules)]

    warnings: list[str] = []
    if isinstance(obj, Job):
        if obj.spec.replicas > MAX_REPLICAS:
            raise InvalidError(
                f"invalid Job {name!r}: spec.replicas: {obj.spec.replicas} is more than {MAX_REPLICAS}, the "
                "maximum for one Job, because the Job keeps the status of every replica and etcd limits an object "
                "to about 1.5 MiB; split the work into several Jobs"
            )
        for manager, settings in obj.spec.backend.items():
            manager_class = _manager_class(manager, catalog)
            if manager_class is None:
                warnings += _not_installed_warning(f"spec.backend.{manager}", manager, "its section", catalog)
                continue
            try:
                manager_class.validate_job_settings(settings)
            except ConfigError as error:
                raise InvalidError(f"invalid Job {name!r}: spec.backend.{manager}: {error}") from error
            except Exception as error:
                field = f"spec.backend.{manager}"
                raise _plugin_failure(manager, "validate_job_settings", obj, field, error, catalog) from error
    return warnings
