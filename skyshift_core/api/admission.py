"""Checks that need installed plugins, run by the API server before a write.

A Cluster's `spec.config` and a Job's `spec.backend.<manager>` sections are validated by the
named cluster manager plugin when it is installed on the API server, so a config error is a clear
4xx on `skyshift apply` rather than a failure inside a controller. When the plugin is not installed
here the object is accepted, and the skylet reports the problem on the Cluster's status. A name
that is close to an installed manager's is then likely a typo, so it gets a warning, which the
response carries in a `Warning` header as Kubernetes' admission warnings do.
"""

from __future__ import annotations

import logging

from skyshift_core.cluster_manager import ConfigError
from skyshift_core.errors import InvalidError, PluginError
from skyshift_core.objects import Cluster, Job, Object
from skyshift_core.objects.base import suggest
from skyshift_core.plugins import default_catalog, load_driver

logger = logging.getLogger(__name__)

MANAGER_GROUP = "skyshift.cluster_managers"


def _manager_class(name: str):
    try:
        return load_driver(MANAGER_GROUP, name)
    except PluginError as error:
        logger.debug("Cluster manager %r is not usable on this API server: %s", name, error.message)
        return None


def _typo_warning(field: str, name: str) -> list[str]:
    """Return a warning when `name`, a cluster manager not installed here, is close to an installed one."""
    installed = sorted({entry.name for entry in default_catalog().entries(MANAGER_GROUP) if entry.error is None})
    hint = suggest(name, installed)
    if not hint:
        return []
    return [
        f"{field}: no cluster manager named {name!r} is installed on this API server{hint}; "
        f"installed: {', '.join(installed)}"
    ]


def admit(obj: Object) -> list[str]:
    """Raise InvalidError naming the field when a plugin rejects the object; return warnings for the client."""
    if isinstance(obj, Cluster):
        manager_class = _manager_class(obj.spec.manager)
        if manager_class is None:
            return _typo_warning("spec.manager", obj.spec.manager)
        try:
            manager_class.validate_config(obj.spec.config)
        except ConfigError as error:
            raise InvalidError(f"invalid Cluster {obj.metadata.name!r}: spec.config: {error}") from error
        return []
    warnings: list[str] = []
    if isinstance(obj, Job):
        for manager, settings in obj.spec.backend.items():
            manager_class = _manager_class(manager)
            if manager_class is None:
                warnings += _typo_warning(f"spec.backend.{manager}", manager)
            validate = getattr(manager_class, "validate_job_settings", None)
            if validate is None:
                continue
            try:
                validate(settings)
            except ConfigError as error:
                raise InvalidError(f"invalid Job {obj.metadata.name!r}: spec.backend.{manager}: {error}") from error
    return warnings
