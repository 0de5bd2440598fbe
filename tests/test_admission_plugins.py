"""Admission through cluster manager plugins: a ConfigError is the user's mistake (422), and any other
exception from a plugin's validate_config or validate_job_settings is a 500 PluginError that names
the plugin, its distribution, the method and the exception."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from skyshift_core.api import admission
from skyshift_core.api.admission import admit
from skyshift_core.cluster_manager import ClusterManager, ConfigError
from skyshift_core.errors import InvalidError, PluginError
from skyshift_core.objects import Cluster, Job
from skyshift_core.plugins import CLUSTER_MANAGERS, PluginCatalog, PluginEntry


class StrictManager(ClusterManager):
    """Needs `nodes` in its config and takes only `queue` in a Job's settings."""

    @classmethod
    def validate_config(cls, config):
        if "nodes" not in config:
            raise ConfigError("missing field 'nodes': expected a node count such as 2")
        return dict(config)

    @classmethod
    def validate_job_settings(cls, settings):
        unknown = sorted(set(settings) - {"queue"})
        if unknown:
            raise ConfigError(f"unknown field {unknown[0]!r}; valid fields: queue")
        return dict(settings)


class BuggyManager(ClusterManager):
    """Has a bug in each check: it indexes fields that may be missing."""

    @classmethod
    def validate_config(cls, config):
        return {"nodes": int(config["nodes"])}

    @classmethod
    def validate_job_settings(cls, settings):
        return {"queue": settings["queue"].upper()}


class PlainManager(ClusterManager):
    """Overrides no check, so the base class's defaults apply."""


def manager_entry(name: str, plugin: type, distribution: str, version: str) -> PluginEntry:
    return PluginEntry(name=name, group=CLUSTER_MANAGERS, distribution=distribution, version=version, plugin=plugin)


@pytest.fixture
def catalog() -> PluginCatalog:
    return PluginCatalog(
        [
            manager_entry("strict", StrictManager, "skyshift-strict", "1.0"),
            manager_entry("buggy", BuggyManager, "skyshift-buggy", "2.3"),
            manager_entry("plain", PlainManager, "skyshift-plain", "0.4"),
        ]
    )


def cluster(manager: str, config: dict[str, Any]) -> Cluster:
    return Cluster.model_validate(
        {"kind": "Cluster", "metadata": {"name": "c1"}, "spec": {"manager": manager, "config": config}}
    )


def job(backend: dict[str, dict[str, Any]]) -> Job:
    return Job.model_validate(
        {"kind": "Job", "metadata": {"name": "j1", "namespace": "default"}, "spec": {"run": "true", "backend": backend}}
    )


# ---- the job-settings hook ------------------------------------------------------------------


def test_default_job_settings_unchanged_copy():
    settings = {"queue": "gpu", "priority": 3}

    normalized = PlainManager.validate_job_settings(settings)

    assert normalized == settings
    assert normalized is not settings


# ---- Cluster spec.config ----------------------------------------------------------------------


def test_cluster_valid_config_admitted(catalog):
    assert admit(cluster("strict", {"nodes": 2}), catalog) == []


def test_cluster_config_error_is_invalid(catalog):
    with pytest.raises(InvalidError) as raised:
        admit(cluster("strict", {}), catalog)

    assert raised.value.status_code == 422
    assert (
        raised.value.message
        == "invalid Cluster 'c1': spec.config: missing field 'nodes': expected a node count such as 2"
    )


def test_cluster_config_bug_names_plugin(catalog):
    with pytest.raises(PluginError) as raised:
        admit(cluster("buggy", {}), catalog)

    error = raised.value
    assert error.status_code == 500
    assert error.message.startswith(
        "cluster manager plugin 'buggy' from skyshift-buggy 2.3 failed in validate_config while checking "
        "spec.config of Cluster 'c1': KeyError: 'nodes'; this is a bug in the plugin"
    )
    assert error.details == {
        "group": CLUSTER_MANAGERS,
        "name": "buggy",
        "method": "validate_config",
        "distribution": "skyshift-buggy",
        "version": "2.3",
    }
    assert isinstance(error.__cause__, KeyError)


def test_plugin_bug_logged_once_with_traceback(catalog, caplog):
    caplog.set_level(logging.DEBUG, logger=admission.__name__)

    with pytest.raises(PluginError):
        admit(cluster("buggy", {}), catalog)

    errors = [
        record for record in caplog.records if record.name == admission.__name__ and record.levelno >= logging.ERROR
    ]
    assert len(errors) == 1
    assert errors[0].exc_info is not None
    assert errors[0].exc_info[0] is KeyError
    assert "'buggy' from skyshift-buggy 2.3" in errors[0].getMessage()


def test_cluster_of_missing_manager_admitted(catalog):
    # Not installed here: accepted, because the plugin may be installed where the controller manager runs.
    warnings = admit(cluster("nomad", {"anything": 1}), catalog)

    assert warnings == [
        (
            "spec.manager: no cluster manager named 'nomad' is installed on this API server, so spec.config "
            "was not checked; installed: buggy, plain, strict"
        )
    ]


# ---- Job spec.backend -------------------------------------------------------------------------


def test_job_valid_settings_admitted(catalog):
    assert admit(job({"strict": {"queue": "gpu"}}), catalog) == []


def test_job_settings_error_is_invalid(catalog):
    with pytest.raises(InvalidError) as raised:
        admit(job({"strict": {"queu": "gpu"}}), catalog)

    assert raised.value.status_code == 422
    assert raised.value.message == "invalid Job 'j1': spec.backend.strict: unknown field 'queu'; valid fields: queue"


def test_job_settings_bug_names_plugin(catalog):
    with pytest.raises(PluginError) as raised:
        admit(job({"buggy": {"queue": 7}}), catalog)

    error = raised.value
    assert error.status_code == 500
    assert error.message.startswith(
        "cluster manager plugin 'buggy' from skyshift-buggy 2.3 failed in validate_job_settings while checking "
        "spec.backend.buggy of Job 'default/j1': AttributeError: 'int' object has no attribute 'upper'"
    )
    assert error.details["method"] == "validate_job_settings"
    assert isinstance(error.__cause__, AttributeError)


def test_job_settings_default_accepts_any(catalog):
    assert admit(job({"plain": {"queue": "gpu", "priority": 3}}), catalog) == []


def test_job_settings_typo_warns(catalog):
    warnings = admit(job({"strcit": {"queue": "gpu"}}), catalog)

    assert warnings == [
        (
            "spec.backend.strcit: no cluster manager named 'strcit' is installed on this API server "
            "(did you mean 'strict'?), so its section was not checked; installed: buggy, plain, strict"
        )
    ]


def test_job_settings_unknown_manager_warns(catalog):
    warnings = admit(job({"pbs": {"queue": "gpu"}}), catalog)

    assert warnings == [
        (
            "spec.backend.pbs: no cluster manager named 'pbs' is installed on this API server, so its section "
            "was not checked; installed: buggy, plain, strict"
        )
    ]


# ---- through the API server -------------------------------------------------------------------


def test_api_plugin_bug_is_500(api, catalog, monkeypatch):
    monkeypatch.setattr(admission, "default_catalog", lambda: catalog)
    manifest = {"kind": "Cluster", "metadata": {"name": "c1"}, "spec": {"manager": "buggy", "config": {}}}

    response = api.post("/api/v1/clusters", json=manifest)

    assert response.status_code == 500, response.text
    body = response.json()
    assert body["reason"] == "PluginError"
    assert body["message"].startswith(
        "cluster manager plugin 'buggy' from skyshift-buggy 2.3 failed in validate_config"
    )
    assert "KeyError: 'nodes'" in body["message"]
    assert api.get("/api/v1/clusters/c1").status_code == 404


def test_replicas_above_maximum_rejected(catalog):
    too_many = job({})
    too_many.spec.replicas = admission.MAX_REPLICAS + 1

    with pytest.raises(InvalidError) as raised:
        admit(too_many, catalog)

    assert raised.value.message == (
        f"invalid Job 'j1': spec.replicas: {admission.MAX_REPLICAS + 1} is more than {admission.MAX_REPLICAS}, the "
        "maximum for one Job, because the Job keeps the status of every replica and etcd limits an object to "
        "about 1.5 MiB; split the work into several Jobs"
    )


def test_replicas_at_maximum_admitted(catalog):
    largest = job({})
    largest.spec.replicas = admission.MAX_REPLICAS

    assert admit(largest, catalog) == []


def test_api_replicas_above_maximum_is_422(api):
    manifest = {"kind": "Job", "metadata": {"name": "huge"}, "spec": {"run": "true", "replicas": 100000}}

    response = api.post("/api/v1/namespaces/default/jobs", json=manifest)

    assert response.status_code == 422, response.text
    assert "spec.replicas: 100000 is more than 5000" in response.json()["message"]
    assert api.get("/api/v1/namespaces/default/jobs/huge").status_code == 404


def test_api_job_settings_error_is_422(api, catalog, monkeypatch):
    monkeypatch.setattr(admission, "default_catalog", lambda: catalog)
    manifest = {
        "kind": "Job",
        "metadata": {"name": "j1"},
        "spec": {"run": "true", "backend": {"strict": {"queu": "a"}}},
    }

    response = api.post("/api/v1/namespaces/default/jobs", json=manifest)

    assert response.status_code == 422, response.text
    assert (
        response.json()["message"] == "invalid Job 'j1': spec.backend.strict: unknown field 'queu'; valid fields: queue"
    )


async def test_logs_plugin_bug_names_plugin(store, monkeypatch):
    """The API server loads a Cluster's manager for `skyshift logs`; a bug there names the plugin."""
    from skyshift_core.api import jobs

    class Broken(ClusterManager):
        @classmethod
        def validate_config(cls, config):
            return config["missing"]

    monkeypatch.setattr(jobs, "load_driver", lambda group, name: Broken)
    await store.create(Cluster.model_validate({"metadata": {"name": "c1"}, "spec": {"manager": "broken"}}))

    with pytest.raises(PluginError) as caught:
        await jobs._manager_for(store, "c1")

    assert caught.value.status_code == 500
    assert "cluster manager plugin 'broken' failed while loading cluster 'c1': KeyError: 'missing'" in caught.value.message
