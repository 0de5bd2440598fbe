"""Plugin discovery: listing, duplicates, aliases, failure isolation, drivers, hooks and `skyshift plugins list`.

The first part builds catalogs in memory. The last part installs the test distributions under
tests/fixtures/plugin_dists into a fresh virtualenv and runs the CLI there.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import sys
import textwrap
from pathlib import Path
from typing import ClassVar, Literal

import pytest
import typer
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from packaging_helpers import PLUGIN_DISTS, Venv, build_wheels
from typer.testing import CliRunner

from skyshift_core import hookspecs
from skyshift_core.cli.plugins_cmd import format_table
from skyshift_core.cluster_manager import ClusterManager
from skyshift_core.errors import PluginError
from skyshift_core.hookspecs import hookimpl
from skyshift_core.objects import Object, registry, resolve_kind
from skyshift_core.scheduler.framework import DividePlugin
from skyshift_core.plugins import (
    CLUSTER_MANAGERS,
    HOOKS,
    PROVISIONERS,
    SCHEDULER_PLUGINS,
    PluginCatalog,
    PluginEntry,
    PluginInfo,
    apply_kind_hooks,
    collect_registrations,
    hook_manager,
    hook_names,
    list_plugins,
    load_driver,
    plugins_payload,
    stray_entry_points,
)


class SpreadSample(DividePlugin):
    """Spread replicas evenly over clusters.

    Second paragraph, which the listing never shows.
    """


class BinpackSample(DividePlugin):
    """Pack replicas onto the fewest clusters."""

    provides = "bin-packing replica division"


class UndocumentedSample:
    pass


class UndocumentedScheduler(DividePlugin):
    pass


class UndocumentedManager(ClusterManager):
    pass


class KubernetesSample(ClusterManager):
    """Run work on Kubernetes clusters."""


class SlurmSample(ClusterManager):
    """Run work on Slurm clusters."""


def entry(name, group=SCHEDULER_PLUGINS, plugin=None, error=None, distribution="skyshift-samples", version="1.0"):
    return PluginEntry(name=name, group=group, distribution=distribution, version=version, plugin=plugin, error=error)


def by_name(infos: list[PluginInfo]) -> dict[tuple[str, str], PluginInfo]:
    return {(info.name, info.distribution): info for info in infos}


# In-memory catalogs.


def test_list_loaded_plugin_record():
    catalog = PluginCatalog([entry("spread", plugin=SpreadSample, distribution="skyshift-scheduler-spread")])

    (info,) = list_plugins(catalog)

    assert info == PluginInfo(
        name="spread",
        group=SCHEDULER_PLUGINS,
        distribution="skyshift-scheduler-spread",
        version="1.0",
        provides="Spread replicas evenly over clusters.",
        status="loaded",
        error=None,
    )


@pytest.mark.parametrize(
    ("plugin", "group", "expected"),
    [
        pytest.param(BinpackSample, SCHEDULER_PLUGINS, "bin-packing replica division", id="provides-attribute"),
        pytest.param(
            SpreadSample, SCHEDULER_PLUGINS, "Spread replicas evenly over clusters.", id="docstring-first-line"
        ),
        pytest.param(UndocumentedScheduler, SCHEDULER_PLUGINS, "scheduler extension points", id="scheduler-generic"),
        pytest.param(UndocumentedManager, CLUSTER_MANAGERS, "cluster manager", id="manager-base-provides"),
        pytest.param(UndocumentedSample(), PROVISIONERS, "new clusters on clouds", id="instance-generic"),
        pytest.param(BinpackSample(), PROVISIONERS, "bin-packing replica division", id="instance-provides"),
    ],
)
def test_provides_sources(plugin, group, expected):
    (info,) = list_plugins(PluginCatalog([entry("sample", group=group, plugin=plugin)]))

    assert info.provides == expected


def test_failed_plugin_gets_group_description():
    catalog = PluginCatalog([entry("gpu", group=CLUSTER_MANAGERS, error=ImportError("no module named 'pynvml'"))])

    (info,) = list_plugins(catalog)

    assert info.status == "failed"
    assert info.provides == "a ClusterManager implementation"
    assert info.error == "ImportError: no module named 'pynvml'"


def test_failure_isolated_in_memory():
    catalog = PluginCatalog(
        [
            entry("broken", error=ImportError("needs 'nonexistent-solver'")),
            entry("spread", plugin=SpreadSample),
        ]
    )

    infos = by_name(list_plugins(catalog))

    assert infos[("broken", "skyshift-samples")].status == "failed"
    assert infos[("broken", "skyshift-samples")].error == "ImportError: needs 'nonexistent-solver'"
    assert infos[("spread", "skyshift-samples")].status == "loaded"
    assert load_driver(SCHEDULER_PLUGINS, "spread", catalog) is SpreadSample


def test_duplicate_name_fails_both():
    catalog = PluginCatalog(
        [
            entry("spread", plugin=SpreadSample, distribution="skyshift-scheduler-spread", version="1.0"),
            entry("spread", plugin=BinpackSample, distribution="acme-spread", version="2.5"),
            entry("binpack", plugin=BinpackSample, distribution="skyshift-scheduler-binpack"),
        ]
    )

    infos = by_name(list_plugins(catalog))

    for key in [("spread", "skyshift-scheduler-spread"), ("spread", "acme-spread")]:
        assert infos[key].status == "failed"
        assert "skyshift-scheduler-spread 1.0" in infos[key].error
        assert "acme-spread 2.5" in infos[key].error
    assert infos[("binpack", "skyshift-scheduler-binpack")].status == "loaded"


def test_duplicate_name_message():
    catalog = PluginCatalog(
        [
            entry("spread", plugin=SpreadSample, distribution="skyshift-scheduler-spread", version="1.0"),
            entry("spread", plugin=BinpackSample, distribution="acme-spread", version="2.5"),
        ]
    )

    (first, second) = list_plugins(catalog)

    assert first.error == second.error
    assert first.error == (
        "Duplicate scheduler plugin name 'spread' in group 'skyshift.scheduler_plugins': declared by "
        f"acme-spread 2.5 ({__name__}:BinpackSample) and skyshift-scheduler-spread 1.0 "
        f"({__name__}:SpreadSample); uninstall all but one of these distributions"
    )


def test_duplicate_same_object_two_distributions():
    # One object under one name from two distributions is still a clash: each distribution claims the name.
    catalog = PluginCatalog(
        [
            entry("kubernetes", CLUSTER_MANAGERS, KubernetesSample, distribution="skyshift-k8s"),
            entry("kubernetes", CLUSTER_MANAGERS, KubernetesSample, distribution="skyshift-k8s-fork"),
        ]
    )

    statuses = [info.status for info in list_plugins(catalog)]

    assert statuses == ["failed", "failed"]


def test_duplicate_driver_names_both_distributions():
    catalog = PluginCatalog(
        [
            entry("slurm", CLUSTER_MANAGERS, SlurmSample, distribution="skyshift-slurm"),
            entry("slurm", CLUSTER_MANAGERS, KubernetesSample, distribution="other-slurm"),
        ]
    )

    with pytest.raises(PluginError) as raised:
        load_driver(CLUSTER_MANAGERS, "slurm", catalog)

    assert "skyshift-slurm" in raised.value.message
    assert "other-slurm" in raised.value.message


def test_repeated_entry_counts_once():
    # A distribution seen twice on sys.path declares the same entry point twice; that is not a clash.
    catalog = PluginCatalog([entry("spread", plugin=SpreadSample), entry("spread", plugin=SpreadSample)])

    infos = list_plugins(catalog)

    assert [(info.name, info.status) for info in infos] == [("spread", "loaded")]


def test_alias_same_distribution_loads():
    catalog = PluginCatalog(
        [
            entry("kubernetes", CLUSTER_MANAGERS, KubernetesSample, distribution="skyshift-k8s"),
            entry("k8s", CLUSTER_MANAGERS, KubernetesSample, distribution="skyshift-k8s"),
        ]
    )

    infos = list_plugins(catalog)

    assert [(info.name, info.status) for info in infos] == [("k8s", "loaded"), ("kubernetes", "loaded")]
    assert infos[0].provides.endswith("(also installed as 'kubernetes')")
    assert infos[1].provides.endswith("(also installed as 'k8s')")
    assert load_driver(CLUSTER_MANAGERS, "k8s", catalog) is KubernetesSample
    assert load_driver(CLUSTER_MANAGERS, "kubernetes", catalog) is KubernetesSample


def test_alias_survives_clash_on_other_name():
    catalog = PluginCatalog(
        [
            entry("kubernetes", CLUSTER_MANAGERS, KubernetesSample, distribution="skyshift-k8s"),
            entry("k8s", CLUSTER_MANAGERS, KubernetesSample, distribution="skyshift-k8s"),
            entry("k8s", CLUSTER_MANAGERS, SlurmSample, distribution="confusing-k8s"),
        ]
    )

    assert load_driver(CLUSTER_MANAGERS, "kubernetes", catalog) is KubernetesSample
    with pytest.raises(PluginError, match="confusing-k8s"):
        load_driver(CLUSTER_MANAGERS, "k8s", catalog)


def test_load_driver_unknown_name_lists_installed():
    catalog = PluginCatalog(
        [
            entry("slurm", CLUSTER_MANAGERS, SlurmSample),
            entry("kubernetes", CLUSTER_MANAGERS, KubernetesSample),
            entry("spread", SCHEDULER_PLUGINS, SpreadSample),
        ]
    )

    with pytest.raises(PluginError) as raised:
        load_driver(CLUSTER_MANAGERS, "slurmx", catalog)

    assert raised.value.message == (
        "No cluster manager named 'slurmx' in group 'skyshift.cluster_managers'; installed: kubernetes, slurm; "
        "did you mean 'slurm'?"
    )
    assert raised.value.details["installed"] == ["kubernetes", "slurm"]


def test_load_driver_unknown_name_sets_failed_plugins_apart():
    catalog = PluginCatalog(
        [
            entry("slurm", CLUSTER_MANAGERS, plugin=SlurmSample),
            entry("kubernetes", CLUSTER_MANAGERS, error=ImportError("No module named 'kubernetes'")),
        ]
    )

    with pytest.raises(PluginError) as raised:
        load_driver(CLUSTER_MANAGERS, "kubernets", catalog)

    assert raised.value.message == (
        "No cluster manager named 'kubernets' in group 'skyshift.cluster_managers'; installed: slurm (failed to "
        "load, see skyshift plugins list: kubernetes); did you mean 'kubernetes'?"
    )
    assert raised.value.details["failed"] == ["kubernetes"]


def test_load_driver_empty_group():
    with pytest.raises(PluginError) as raised:
        load_driver(PROVISIONERS, "skypilot", PluginCatalog([]))

    assert raised.value.message == "No provisioner named 'skypilot' in group 'skyshift.provisioners'; installed: none"


def test_load_driver_failed_plugin():
    error = ImportError("No module named 'kubernetes'")
    catalog = PluginCatalog([entry("kubernetes", CLUSTER_MANAGERS, error=error, distribution="skyshift-k8s")])

    with pytest.raises(PluginError) as raised:
        load_driver(CLUSTER_MANAGERS, "kubernetes", catalog)

    assert raised.value.message == (
        "Cluster manager 'kubernetes' from skyshift-k8s 1.0 failed to load: "
        "ImportError: No module named 'kubernetes'; fix or reinstall that distribution"
    )
    assert raised.value.__cause__ is error


def test_load_driver_rejects_hooks_group():
    with pytest.raises(PluginError, match="Unknown driver group 'skyshift.hooks'"):
        load_driver(HOOKS, "anything", PluginCatalog([]))


def test_entry_rejects_unknown_group():
    with pytest.raises(ValueError, match="unknown group 'skyshift.schedulers'"):
        PluginCatalog([entry("spread", group="skyshift.schedulers", plugin=SpreadSample)])


def test_payload_shape():
    catalog = PluginCatalog([entry("spread", plugin=SpreadSample), entry("broken", error=ImportError("gone"))])

    payload = plugins_payload(catalog)

    assert payload["kind"] == "PluginList"
    assert payload["warnings"] == []
    assert [item["name"] for item in payload["items"]] == ["broken", "spread"]
    assert set(payload["items"][0]) == {"name", "group", "distribution", "version", "provides", "status", "error"}
    assert json.loads(json.dumps(payload)) == payload


def test_listing_order_by_group_then_name():
    catalog = PluginCatalog(
        [
            entry("zeta", HOOKS, plugin=LoggingHooks()),
            entry("slurm", CLUSTER_MANAGERS, SlurmSample),
            entry("spread", SCHEDULER_PLUGINS, SpreadSample),
            entry("binpack", SCHEDULER_PLUGINS, BinpackSample),
        ]
    )

    names = [(info.group, info.name) for info in list_plugins(catalog)]

    assert names == [
        (SCHEDULER_PLUGINS, "binpack"),
        (SCHEDULER_PLUGINS, "spread"),
        (CLUSTER_MANAGERS, "slurm"),
        (HOOKS, "zeta"),
    ]


# Discovery from distribution metadata, loaded through stevedore.


class SampleDistribution(importlib.metadata.Distribution):
    """A distribution that exists only in memory: its METADATA and entry_points.txt are strings."""

    def __init__(self, name: str, version: str, entry_points: dict[str, dict[str, str]]):
        sections = []
        for group, names in entry_points.items():
            lines = "\n".join(f"{name} = {target}" for name, target in names.items())
            sections.append(f"[{group}]\n{lines}\n")
        self._files = {
            "METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
            "entry_points.txt": "\n".join(sections),
        }

    def read_text(self, filename: str) -> str | None:
        return self._files.get(filename)

    def locate_file(self, path):
        raise FileNotFoundError(f"{path}: an in-memory sample distribution has no files")


@pytest.fixture
def sample_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Modules that plugin entry points name: one that imports, and others that fail in different ways."""
    modules = {
        "skyshift_sample_good": (
            '"""Good sample."""\n\nfrom skyshift_core.cluster_manager import ClusterManager\n'
            "from skyshift_core.scheduler.framework import ScorePlugin\n\n"
            'class Scheduler(ScorePlugin):\n    """Scores clusters."""\n\n'
            'class Manager(ClusterManager):\n    """Runs work."""\n'
        ),
        "skyshift_sample_import_error": "raise ImportError(\"needs the library 'nonexistent-solver'\")\n",
        "skyshift_sample_assert": 'assert False, "requires a GPU"\n',
        "skyshift_sample_runtime_error": 'raise RuntimeError("configuration file missing")\n',
        "skyshift_sample_exit": 'import sys\nsys.exit("unsupported platform")\n',
        "skyshift_sample_none": "Plugin = None\n",
    }
    for name, source in modules.items():
        (tmp_path / f"{name}.py").write_text(source)
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))


def test_discover_reads_distribution_metadata(sample_modules):
    distribution = SampleDistribution(
        "skyshift-sample", "3.1.4", {SCHEDULER_PLUGINS: {"good": "skyshift_sample_good:Scheduler"}}
    )

    (info,) = list_plugins(PluginCatalog.discover([distribution]))

    assert info == PluginInfo(
        name="good",
        group=SCHEDULER_PLUGINS,
        distribution="skyshift-sample",
        version="3.1.4",
        provides="Scores clusters.",
        status="loaded",
    )


def test_discover_ignores_foreign_groups(sample_modules):
    distribution = SampleDistribution(
        "skyshift-sample",
        "1",
        {"console_scripts": {"tool": "skyshift_sample_good:Scheduler"}, "pytest11": {"x": "skyshift_sample_good"}},
    )

    assert list_plugins(PluginCatalog.discover([distribution])) == []


def test_misspelt_group_named_with_closest():
    distributions = [
        SampleDistribution("skyshift-localproc", "1", {"skyshift.cluster_manager": {"localproc": "localproc:Manager"}}),
        SampleDistribution("skyshift-good", "1", {CLUSTER_MANAGERS: {"good": "good:Manager"}}),
        SampleDistribution("other-tool", "1", {"console_scripts": {"tool": "tool:main"}}),
    ]

    assert stray_entry_points(distributions) == [
        "skyshift-localproc declares entry point 'localproc' in group 'skyshift.cluster_manager', which SkyShift "
        "does not read; did you mean 'skyshift.cluster_managers'?"
    ]


def test_payload_warns_of_misspelt_group():
    distributions = [
        SampleDistribution("skyshift-localproc", "1", {"skyshift.cluster_manager": {"localproc": "localproc:Manager"}}),
    ]

    payload = plugins_payload(PluginCatalog.discover(distributions))

    assert payload["items"] == []
    assert payload["warnings"] == stray_entry_points(distributions)
    assert "did you mean 'skyshift.cluster_managers'?" in payload["warnings"][0]


def test_missing_driver_names_its_misspelt_group():
    distributions = [
        SampleDistribution("skyshift-localproc", "1", {"skyshift.cluster_manager": {"localproc": "localproc:Manager"}}),
    ]
    catalog = PluginCatalog.discover(distributions)

    with pytest.raises(PluginError) as raised:
        catalog.load_driver(CLUSTER_MANAGERS, "localproc")

    assert raised.value.message == (
        "No cluster manager named 'localproc' in group 'skyshift.cluster_managers'; installed: none. "
        "skyshift-localproc declares entry point 'localproc' in group 'skyshift.cluster_manager', which SkyShift "
        "does not read; did you mean 'skyshift.cluster_managers'?"
    )


@pytest.mark.parametrize(
    ("target", "expected_error"),
    [
        pytest.param(
            "skyshift_sample_import_error:Plugin",
            "ImportError: needs the library 'nonexistent-solver'",
            id="import-error",
        ),
        pytest.param("skyshift_sample_assert:Plugin", "AssertionError: requires a GPU", id="assertion"),
        pytest.param(
            "skyshift_sample_runtime_error:Plugin", "RuntimeError: configuration file missing", id="runtime-error"
        ),
        pytest.param("skyshift_sample_exit:Plugin", "SystemExit: unsupported platform", id="system-exit"),
        pytest.param(
            "skyshift_sample_none:Plugin",
            "entry point target 'skyshift_sample_none:Plugin' is None; point it at a class or module",
            id="none-target",
        ),
        pytest.param(
            "skyshift_sample_absent:Plugin",
            "ModuleNotFoundError: No module named 'skyshift_sample_absent'; the entry point names "
            "'skyshift_sample_absent:Plugin': correct that value in the distribution's entry points, or reinstall "
            "skyshift-broken",
            id="missing-module",
        ),
        pytest.param(
            "skyshift_sample_good:Absent",
            "AttributeError: module 'skyshift_sample_good' has no attribute 'Absent'; the entry point names "
            "'skyshift_sample_good:Absent': correct that value in the distribution's entry points, or reinstall "
            "skyshift-broken",
            id="missing-attribute",
        ),
    ],
)
def test_discover_isolates_load_failures(sample_modules, target, expected_error):
    distributions = [
        SampleDistribution("skyshift-broken", "0.1", {SCHEDULER_PLUGINS: {"broken": target}}),
        SampleDistribution("skyshift-good", "0.2", {SCHEDULER_PLUGINS: {"good": "skyshift_sample_good:Scheduler"}}),
    ]

    infos = by_name(list_plugins(PluginCatalog.discover(distributions)))

    assert infos[("broken", "skyshift-broken")].status == "failed"
    assert infos[("broken", "skyshift-broken")].error == expected_error
    assert infos[("good", "skyshift-good")].status == "loaded"


def test_discover_duplicate_across_distributions(sample_modules):
    distributions = [
        SampleDistribution("skyshift-one", "1", {CLUSTER_MANAGERS: {"slurm": "skyshift_sample_good:Manager"}}),
        SampleDistribution("skyshift-two", "2", {CLUSTER_MANAGERS: {"slurm": "skyshift_sample_good:Manager"}}),
    ]

    with pytest.raises(PluginError) as raised:
        load_driver(CLUSTER_MANAGERS, "slurm", PluginCatalog.discover(distributions))

    assert "skyshift-one 1" in raised.value.message
    assert "skyshift-two 2" in raised.value.message


def test_discover_first_copy_of_distribution_wins(sample_modules):
    # The same distribution found twice on sys.path (for example an editable checkout and a wheel).
    distributions = [
        SampleDistribution("skyshift_sample", "2.0", {SCHEDULER_PLUGINS: {"good": "skyshift_sample_good:Scheduler"}}),
        SampleDistribution("skyshift-sample", "1.0", {SCHEDULER_PLUGINS: {"good": "skyshift_sample_good:Scheduler"}}),
    ]

    infos = list_plugins(PluginCatalog.discover(distributions))

    assert [(info.name, info.version, info.status) for info in infos] == [("good", "2.0", "loaded")]


def test_load_driver_imports_only_that_driver(sample_modules):
    distributions = [
        SampleDistribution(
            "skyshift-sample",
            "1",
            {
                CLUSTER_MANAGERS: {
                    "good": "skyshift_sample_good:Manager",
                    "broken": "skyshift_sample_runtime_error:Plugin",
                }
            },
        )
    ]

    plugin = load_driver(CLUSTER_MANAGERS, "good", PluginCatalog.discover(distributions))

    assert plugin.__name__ == "Manager"
    assert "skyshift_sample_runtime_error" not in sys.modules


@pytest.mark.parametrize(
    ("group", "target", "expected"),
    [
        pytest.param(
            CLUSTER_MANAGERS,
            "skyshift_sample_good:Scheduler",
            "entry point target 'skyshift_sample_good:Scheduler' is a class skyshift_sample_good.Scheduler, but a "
            "cluster manager must be a class that subclasses skyshift_core.cluster_manager.ClusterManager; point "
            "the entry point at such a class",
            id="manager-of-other-class",
        ),
        pytest.param(
            SCHEDULER_PLUGINS,
            "skyshift_sample_good:Manager",
            "entry point target 'skyshift_sample_good:Manager' is a class skyshift_sample_good.Manager, but a "
            "scheduler plugin must be a class that subclasses one of FilterPlugin, ScorePlugin, DividePlugin or "
            "ReservePlugin; point the entry point at such a class",
            id="scheduler-of-other-class",
        ),
        pytest.param(
            SCHEDULER_PLUGINS,
            "skyshift_sample_good",
            "entry point target 'skyshift_sample_good' is a module <module 'skyshift_sample_good'",
            id="scheduler-module",
        ),
    ],
)
def test_driver_of_wrong_type_listed_as_failed(sample_modules, group, target, expected):
    # Found when listed, as a module that fails to import is, rather than when a Cluster or profile first uses it.
    distribution = SampleDistribution("skyshift-wrong", "1", {group: {"wrong": target}})
    catalog = PluginCatalog.discover([distribution])

    (info,) = list_plugins(catalog)

    assert info.status == "failed"
    assert info.error.startswith(expected)
    with pytest.raises(PluginError, match="failed to load: entry point target"):
        load_driver(group, "wrong", catalog)


# Hooks.


class Gadget(Object):
    """A kind added by a hook plugin in these tests."""

    plural: ClassVar[str] = "gadgets"
    singular: ClassVar[str] = "gadget"
    kind: Literal["Gadget"] = "Gadget"


class GadgetHooks:
    """Adds the Gadget kind."""

    @hookimpl
    def register_kinds(self):
        return [Gadget]


class LoggingHooks:
    """Adds a controller factory."""

    @hookimpl
    def register_controllers(self):
        return [lambda: "log-controller"]


class MisspelledHooks:
    @hookimpl
    def register_kindz(self):
        return []


class WrongArgumentHooks:
    @hookimpl
    def register_cli_commands(self, application):
        pass


class UnmarkedHooks:
    def register_kinds(self):
        return [Gadget]


@pytest.fixture
def kind_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A private copy of the kind registry, so kinds registered by a test disappear after it."""
    monkeypatch.setattr(registry, "_KINDS", dict(registry._KINDS))


def hooks_catalog(*plugins: tuple[str, object]) -> PluginCatalog:
    return PluginCatalog([entry(name, HOOKS, plugin=plugin) for name, plugin in plugins])


def test_hook_manager_registers_valid_plugins():
    gadgets, logging_hooks = GadgetHooks(), LoggingHooks()

    manager = hook_manager(hooks_catalog(("gadgets", gadgets), ("logging", logging_hooks)))

    assert manager.get_plugin("gadgets") is gadgets
    assert manager.get_plugin("logging") is logging_hooks


@pytest.mark.parametrize(
    ("plugin", "expected_error"),
    [
        pytest.param(MisspelledHooks(), "unknown hook 'register_kindz'", id="unknown-hook"),
        pytest.param(
            WrongArgumentHooks(), "Argument(s) {'application'} are declared in the hookimpl", id="wrong-argument"
        ),
        pytest.param(UnmarkedHooks(), "implements no SkyShift hook; decorate its functions", id="no-hookimpl"),
    ],
)
def test_invalid_hook_plugin_fails_alone(plugin, expected_error):
    catalog = hooks_catalog(("invalid", plugin), ("gadgets", GadgetHooks()))

    infos = by_name(list_plugins(catalog))
    manager = hook_manager(catalog)

    assert infos[("invalid", "skyshift-samples")].status == "failed"
    assert expected_error in infos[("invalid", "skyshift-samples")].error
    assert "\n" not in infos[("invalid", "skyshift-samples")].error
    assert manager.get_plugin("invalid") is None
    assert manager.get_plugin("gadgets") is not None


def test_hook_alias_registered_once():
    gadgets = GadgetHooks()

    manager = hook_manager(hooks_catalog(("gadgets", gadgets), ("gadgets-alias", gadgets)))

    assert [name for name, _ in manager.list_name_plugin()] == ["gadgets"]


def test_duplicate_names_warned_where_used(caplog):
    # Every CLI command discovers plugins, so a clash among scheduler plugins must not print a
    # warning on `skyshift get jobs`. A clash among hooks does, because every command loads them.
    drivers = PluginCatalog(
        [
            entry("spread", plugin=SpreadSample, distribution="skyshift-scheduler-spread"),
            entry("spread", plugin=BinpackSample, distribution="acme-spread"),
        ]
    )
    hooks = PluginCatalog(
        [
            entry("gadgets", HOOKS, plugin=GadgetHooks(), distribution="skyshift-gadgets"),
            entry("gadgets", HOOKS, plugin=LoggingHooks(), distribution="acme-gadgets"),
        ]
    )

    with caplog.at_level("WARNING", logger="skyshift_core.plugins"):
        list_plugins(drivers)
        list_plugins(hooks)
        assert caplog.records == []
        hook_manager(hooks)

    (record,) = caplog.records
    assert record.getMessage().startswith("Duplicate hook plugin name 'gadgets' in group 'skyshift.hooks'")
    assert record.getMessage().endswith("; every hook plugin with that name is skipped")


def test_hook_register_kinds(kind_registry):
    added = apply_kind_hooks(hook_manager(hooks_catalog(("gadgets", GadgetHooks()))))

    assert added == [Gadget]
    assert resolve_kind("gadgets") is Gadget


def test_api_worker_app_serves_plugin_kinds(kind_registry, monkeypatch):
    """uvicorn's worker processes build the app with `app_from_environment`, without the CLI."""
    from skyshift_core import plugins
    from skyshift_core.api import server

    monkeypatch.setattr(plugins, "hook_manager", lambda: hook_manager(hooks_catalog(("gadgets", GadgetHooks()))))
    # The app is only built, never started, so it connects to no etcd.
    monkeypatch.setenv(server._SETTINGS_VARIABLE, json.dumps({}))

    app = server.app_from_environment()

    assert resolve_kind("gadgets") is Gadget
    assert "/api/v1/namespaces/{namespace}/gadgets" in app.openapi()["paths"]


def test_apply_kind_hooks_idempotent(kind_registry):
    manager = hook_manager(hooks_catalog(("gadgets", GadgetHooks())))
    apply_kind_hooks(manager)

    assert apply_kind_hooks(manager) == []
    assert resolve_kind("gadget") is Gadget


class ShadowJob(Object):
    plural: ClassVar[str] = "shadowjobs"
    kind: Literal["Job"] = "Job"


class PluralThief(Object):
    plural: ClassVar[str] = "jobs"
    kind: Literal["Thief"] = "Thief"


class NoPlural(Object):
    kind: Literal["NoPlural"] = "NoPlural"


class BadKindHooks:
    def __init__(self, result):
        self.result = result

    @hookimpl
    def register_kinds(self):
        return self.result


@pytest.mark.parametrize(
    ("result", "expected_error"),
    [
        pytest.param(
            [ShadowJob],
            f"Kind 'Job' of {__name__}:ShadowJob is already registered by skyshift_core.objects.job:Job",
            id="kind-taken",
        ),
        pytest.param(
            [PluralThief],
            f"Kind 'Thief' of {__name__}:PluralThief uses plural 'jobs', which skyshift_core.objects.job:Job",
            id="plural-taken",
        ),
        pytest.param([NoPlural], "sets no plural", id="no-plural"),
        pytest.param([dict], "is not a subclass of skyshift_core.objects.Object", id="not-object"),
        pytest.param(Gadget, f"returned <class '{__name__}.Gadget'> of type ModelMetaclass", id="not-a-list"),
    ],
)
def test_apply_kind_hooks_rejects(kind_registry, result, expected_error):
    manager = hook_manager(hooks_catalog(("bad", BadKindHooks(result)), ("gadgets", GadgetHooks())))

    with pytest.raises(PluginError) as raised:
        apply_kind_hooks(manager)

    assert expected_error in raised.value.message
    # Every model is checked before any is registered, so the valid Gadget kind was not added either.
    assert "Gadget" not in registry.kinds()


def test_hook_register_api_routers():
    class RouterHooks:
        @hookimpl
        def register_api_routers(self):
            router = APIRouter()
            router.add_api_route("/gadget-stats", lambda: {"gadgets": 3}, methods=["GET"])
            return [router]

    app = FastAPI()
    for router in collect_registrations(hook_manager(hooks_catalog(("stats", RouterHooks()))), "register_api_routers"):
        app.include_router(router, prefix="/api/v1")

    response = TestClient(app).get("/api/v1/gadget-stats")

    assert response.json() == {"gadgets": 3}


def test_hook_register_cli_commands():
    class CommandHooks:
        @hookimpl
        def register_cli_commands(self, app):
            @app.command("gadgets")
            def gadgets() -> None:
                typer.echo("3 gadgets")

    app = typer.Typer()

    @app.command("version")
    def version() -> None:
        typer.echo("0.1.0")

    hook_manager(hooks_catalog(("commands", CommandHooks()))).hook.register_cli_commands(app=app)
    result = CliRunner().invoke(app, ["gadgets"])

    assert result.exit_code == 0, result.output
    assert result.output == "3 gadgets\n"


def test_hook_register_controllers():
    factories = collect_registrations(hook_manager(hooks_catalog(("logging", LoggingHooks()))), "register_controllers")

    assert [factory() for factory in factories] == ["log-controller"]


def test_collect_registrations_rejects_unknown_hook():
    with pytest.raises(ValueError, match="'register_kindz' is not a collecting hook; expected one of register_api"):
        collect_registrations(hook_manager(hooks_catalog()), "register_kindz")


@pytest.mark.parametrize("name", hook_names())
def test_hookspec_documented(name):
    # Like datasette's documentation test: a hook without a contract must not ship.
    docstring = inspect.getdoc(getattr(hookspecs, name))

    assert docstring, f"hookspec {name} has no docstring"
    assert "call" in docstring.lower(), f"hookspec {name} does not say when it is called"
    assert len(docstring.splitlines()) >= 3, f"hookspec {name} does not say what implementers must guarantee"


@pytest.mark.parametrize("name", hook_names())
def test_hookspec_tested(name):
    assert f"test_hook_{name}" in globals(), f"hookspec {name} has no test named test_hook_{name} in this module"


def test_hookspec_names_follow_grammar():
    assert all(name.startswith("register_") for name in hook_names())


# The CLI's table.


def test_table_columns_and_status():
    infos = [
        PluginInfo("spread", SCHEDULER_PLUGINS, "skyshift-scheduler-spread", "0.1.0", "even spreading", "loaded"),
        PluginInfo(
            "gpu", CLUSTER_MANAGERS, "acme-gpu", "2.0", "a ClusterManager implementation", "failed", "ImportError: x"
        ),
    ]

    lines = format_table(infos).splitlines()

    assert lines[0].split() == ["NAME", "GROUP", "DISTRIBUTION", "VERSION", "PROVIDES", "STATUS"]
    assert lines[1].split("   ")[0].rstrip() == "spread"
    assert lines[1].endswith("loaded")
    assert lines[2].endswith("failed: ImportError: x")
    # Columns line up: each header starts where its cells start.
    status_column = lines[0].index("STATUS")
    assert lines[1][status_column:] == "loaded"
    assert lines[2][status_column:] == "failed: ImportError: x"


@pytest.mark.parametrize("arguments", [["list"], ["list", "--json"]], ids=["table", "json"])
def test_cli_warns_of_misspelt_group(monkeypatch, arguments):
    from skyshift_core import plugins as plugins_module
    from skyshift_core.cli.plugins_cmd import app as plugins_app

    distributions = [
        SampleDistribution("skyshift-localproc", "1", {"skyshift.cluster_manager": {"localproc": "localproc:Manager"}}),
    ]
    catalog = PluginCatalog.discover(distributions)
    monkeypatch.setattr(plugins_module, "default_catalog", lambda: catalog)

    result = CliRunner().invoke(plugins_app, arguments)

    assert result.exit_code == 0
    warning = stray_entry_points(distributions)[0]
    assert result.stderr.splitlines()[-1] == f"Warning: {warning}"
    if "--json" in arguments:
        assert json.loads(result.stdout)["warnings"] == [warning]


# Installed test distributions, in a fresh virtualenv.

FIXTURE_DISTRIBUTIONS = ("skyshift-testplugin-good", "skyshift-testplugin-broken", "skyshift-testplugin-dup")


@pytest.fixture(scope="session")
def fixture_sites(core_venv: Venv, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each test plugin distribution built as a wheel and installed into a directory of its own.

    A test puts the directories of the distributions it needs on PYTHONPATH, so each test gets its
    own combination of plugins while all share one virtualenv.
    """
    wheels = build_wheels(
        {PLUGIN_DISTS / name: () for name in FIXTURE_DISTRIBUTIONS},
        tmp_path_factory.mktemp("fixture-builds"),
        tmp_path_factory.mktemp("fixture-wheels"),
    )
    root = tmp_path_factory.mktemp("fixture-sites")
    sites = {}
    for project, wheel in wheels.items():
        # --no-deps: the fixtures depend only on skyshift, which the virtualenv already has.
        core_venv.pip("install", "--no-deps", "--no-index", "--target", root / project.name, wheel)
        sites[project.name] = root / project.name
    return sites


def plugins_list_command(venv: Venv) -> list[str | Path]:
    """`skyshift plugins list` through the console script that the core's wheel installs."""
    return [venv.script("skyshift"), "plugins", "list"]


def installed_listing(venv: Venv, sites: list[Path]) -> dict[tuple[str, str], dict]:
    result = venv.run([*plugins_list_command(venv), "--json"], extra_paths=sites)
    payload = json.loads(result.stdout)
    assert payload["kind"] == "PluginList"
    return {(item["name"], item["distribution"]): item for item in payload["items"]}


@pytest.mark.slow
def test_installed_good_plugin_loads(core_venv, fixture_sites):
    listing = installed_listing(core_venv, [fixture_sites["skyshift-testplugin-good"]])

    assert listing[("cost-test", "skyshift-testplugin-good")] == {
        "name": "cost-test",
        "group": "skyshift.scheduler_plugins",
        "distribution": "skyshift-testplugin-good",
        "version": "1.2.3",
        "provides": "cost-based cluster scoring (test fixture) (also installed as 'cheapest-test')",
        "status": "loaded",
        "error": None,
    }
    assert listing[("cheapest-test", "skyshift-testplugin-good")]["status"] == "loaded"
    assert listing[("testplugin-good", "skyshift-testplugin-good")]["group"] == "skyshift.hooks"
    assert listing[("testplugin-good", "skyshift-testplugin-good")]["status"] == "loaded"


@pytest.mark.slow
def test_installed_broken_plugin_isolated(core_venv, fixture_sites):
    sites = [fixture_sites["skyshift-testplugin-good"], fixture_sites["skyshift-testplugin-broken"]]

    listing = installed_listing(core_venv, sites)

    broken = listing[("broken-test", "skyshift-testplugin-broken")]
    assert broken["status"] == "failed"
    assert broken["version"] == "0.0.1"
    assert broken["error"] == (
        "ImportError: skyshift-testplugin-broken needs the library 'nonexistent-solver', which is not installed"
    )
    assert listing[("cost-test", "skyshift-testplugin-good")]["status"] == "loaded"


@pytest.mark.slow
def test_installed_duplicate_fails_both(core_venv, fixture_sites):
    listing = installed_listing(core_venv, list(fixture_sites.values()))

    for distribution in ["skyshift-testplugin-good", "skyshift-testplugin-dup"]:
        item = listing[("cost-test", distribution)]
        assert item["status"] == "failed"
        assert "skyshift-testplugin-good 1.2.3" in item["error"]
        assert "skyshift-testplugin-dup 0.2.0" in item["error"]
    # The alias has a name of its own, so the clash on cost-test does not affect it.
    assert listing[("cheapest-test", "skyshift-testplugin-good")]["status"] == "loaded"


@pytest.mark.slow
def test_installed_json_matches_payload(core_venv, fixture_sites):
    sites = list(fixture_sites.values())
    script = "import json; from skyshift_core.plugins import plugins_payload; print(json.dumps(plugins_payload()))"

    from_cli = core_venv.run([*plugins_list_command(core_venv), "--json"], extra_paths=sites).stdout
    from_api = core_venv.python_run("-c", script, extra_paths=sites).stdout

    assert json.loads(from_cli) == json.loads(from_api)


@pytest.mark.slow
def test_installed_table(core_venv, fixture_sites):
    sites = [fixture_sites["skyshift-testplugin-good"], fixture_sites["skyshift-testplugin-broken"]]

    lines = core_venv.run(plugins_list_command(core_venv), extra_paths=sites).stdout.splitlines()

    assert lines[0].split() == ["NAME", "GROUP", "DISTRIBUTION", "VERSION", "PROVIDES", "STATUS"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert rows["cost-test"].endswith("   loaded")
    assert rows["cost-test"].split()[:4] == ["cost-test", SCHEDULER_PLUGINS, "skyshift-testplugin-good", "1.2.3"]
    assert rows["broken-test"].endswith(
        "failed: ImportError: skyshift-testplugin-broken needs the library 'nonexistent-solver', which is not installed"
    )


@pytest.mark.slow
def test_installed_kind_hook(core_venv, fixture_sites):
    script = textwrap.dedent(
        """
        import json
        from skyshift_core.objects import resolve_kind
        from skyshift_core.plugins import apply_kind_hooks
        added = [f"{model.__module__}:{model.__name__}" for model in apply_kind_hooks()]
        print(json.dumps({"added": added, "widgets": resolve_kind("widgets").__module__}))
        """
    )

    result = core_venv.python_run("-c", script, extra_paths=[fixture_sites["skyshift-testplugin-good"]])
    output = json.loads(result.stdout)

    # Plugins from plugins/ that the packaging tests installed may add kinds of their own.
    assert "skyshift_testplugin_good.hooks:Widget" in output["added"]
    assert output["widgets"] == "skyshift_testplugin_good.hooks"
