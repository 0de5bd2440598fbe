"""Checks that need installed plugins, run by the API server before a write.

A Cluster's `spec.config` and a Job's `spec.backend.<manager>` sections are validated by the
named cluster manager plugin when it is installed on the API server, so a config error is a clear
4xx on `skyshift apply` rather than a failure inside a controller. When the plugin is not installed
here the object is accepted, and the skylet reports the problem on the Cluster's status.
"""

from __future__ import annotations

import logging

from skyshift_core.cluster_manager import ConfigError
from skyshift_core.errors import InvalidError, PluginError
from skyshift_core.objects import Cluster, Job, Object
from skyshift_core.plugins import load_driver

logger = logging.getLogger(__name__)

MANAGER_GROUP = "skyshift.cluster_managers"


def _manager_class(name: str):
    try:
        return load_driver(MANAGER_GROUP, name)
    except PluginError as error:
        logger.debug("Cluster manager %r is not usable on this API server: %s", name, error.message)
        return None


def admit(obj: Object) -> None:
    """Raise InvalidError naming the field when a plugin rejects the object."""
    if isinstance(obj, Cluster):
        manager_class = _manager_class(obj.spec.manager)
        if manager_class is None:
            return
        try:
            manager_class.validate_config(obj.spec.config)
        except ConfigError as error:
            raise InvalidError(f"invalid Cluster {obj.metadata.name!r}: spec.config: {error}") from error
    elif isinstance(obj, Job):
        for manager, settings in obj.spec.backend.items():
            manager_class = _manager_class(manager)
            validate = getattr(manager_class, "validate_job_settings", None)
            if validate is None:
                continue
            try:
                validate(settings)
            except ConfigError as error:
                raise InvalidError(f"invalid Job {obj.metadata.name!r}: spec.backend.{manager}: {error}") from error
