"""Scheduler profiles from configuration: how filters merge with the built-in ones, and how plugin
arguments and mistakes in a profile are handled."""

from __future__ import annotations

import pytest
from scheduler_fakes import FillInOrder

from skyshift_core.errors import PluginError
from skyshift_core.scheduler.builtin import ClusterReady, FilterPolicyFilter, Placement, ResourcesFit
from skyshift_core.scheduler.framework import FilterPlugin, Status
from skyshift_core.scheduler.profile import DEFAULT_FILTERS, build_profile, build_profiles, filter_names


class DenySite(FilterPlugin):
    """Test filter: rejects the cluster whose name is the `site` argument."""

    name = "deny-site"

    def __init__(self, args=None):
        super().__init__(args)
        unknown = sorted(set(self.args) - {"site"})
        if unknown:
            raise ValueError(f"unknown argument(s) {', '.join(unknown)} for deny-site; it takes site")
        self.site = self.args.get("site", "")

    def filter(self, state, job, cluster):
        return Status.unresolvable("denied") if cluster.name == self.site else Status.success()


class ConfigReadingFilter(FilterPlugin):
    """Test filter whose constructor fails as one reading a missing configuration file would."""

    name = "config-reading"

    def __init__(self, args=None):
        super().__init__(args)
        raise RuntimeError("cannot read /etc/rc-sched.conf")


class NoArgsFilter(FilterPlugin):
    """Test filter whose constructor takes no args, against the Plugin contract."""

    name = "no-args"

    def __init__(self):
        super().__init__()


PLUGINS = {
    "config-reading": ConfigReadingFilter,
    "no-args": NoArgsFilter,
    "cluster-ready": ClusterReady,
    "placement": Placement,
    "filter-policy": FilterPolicyFilter,
    "resources-fit": ResourcesFit,
    "deny-site": DenySite,
    "fill": FillInOrder,
}


def resolve(name: str) -> type:
    if name not in PLUGINS:
        raise PluginError(f"No scheduler plugin named {name!r}; installed: {', '.join(sorted(PLUGINS))}")
    return PLUGINS[name]


BUILTIN = list(DEFAULT_FILTERS)


@pytest.mark.parametrize(
    "fields, expected",
    [
        # Nothing listed: the four built-in filters, in their fixed order.
        ({}, BUILTIN),
        # A listed filter runs after the built-in ones; none of them is dropped.
        ({"filters": ["deny-site"]}, BUILTIN + ["deny-site"]),
        # Listing a built-in filter again neither repeats nor moves it.
        ({"filters": ["resources-fit", "deny-site", "cluster-ready"]}, BUILTIN + ["deny-site"]),
        # A disabled built-in filter is left out; the others keep their order.
        (
            {"filters": ["deny-site"], "disabled_filters": ["placement"]},
            ["cluster-ready", "filter-policy", "resources-fit", "deny-site"],
        ),
        # '*' leaves out every built-in filter, so the listed ones run alone, in the listed order.
        (
            {"filters": ["deny-site", "cluster-ready"], "disabled_filters": ["*"]},
            ["deny-site", "cluster-ready"],
        ),
        ({"disabled_filters": ["*"]}, []),
    ],
    ids=["default", "added", "relisted", "disabled-one", "disabled-all", "disabled-all-none-listed"],
)
def test_filter_names_merge(fields, expected):
    assert filter_names({"name": "p", **fields}) == expected


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"disabled_filters": ["deny-site"]}, "'deny-site', which is not a built-in filter; valid: cluster-ready"),
        ({"disabled_filters": ["*", "placement"]}, "mixes '\\*' with names"),
        (
            {"filters": ["placement"], "disabled_filters": ["placement"]},
            "lists 'placement' under both filters and disabled_filters",
        ),
        ({"filters": "deny-site"}, "filters must be a list of plugin names"),
        ({"disabled_filters": [3]}, "disabled_filters must be a list of plugin names"),
    ],
    ids=["disable-unknown", "star-with-names", "enabled-and-disabled", "filters-not-list", "disabled-not-names"],
)
def test_filter_names_invalid(fields, message):
    with pytest.raises(PluginError, match=message):
        filter_names({"name": "p", **fields})


def test_profile_keeps_builtin_filters():
    profile = build_profile({"name": "p", "divide": "fill", "filters": ["deny-site"]}, resolve)

    assert [plugin.name for plugin in profile.filters] == BUILTIN + ["deny-site"]


def test_profile_args_reach_plugin():
    spec = {"name": "p", "divide": "fill", "filters": ["deny-site"], "args": {"deny-site": {"site": "b"}}}

    profile = build_profile(spec, resolve)

    (deny,) = [plugin for plugin in profile.filters if plugin.name == "deny-site"]
    assert deny.site == "b"


def test_profile_shares_one_instance_per_plugin():
    # placement is both a filter and a score plugin; one instance serves both extension points.
    profile = build_profile({"name": "p", "divide": "fill", "scores": ["placement"]}, resolve)

    (placement_filter,) = [plugin for plugin in profile.filters if plugin.name == "placement"]
    assert profile.scorers == [(placement_filter, 1)]


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"args": {"deny-sit": {"site": "b"}}}, "has args for 'deny-sit', which it does not use"),
        ({"args": ["deny-site"]}, "args must map plugin names to their arguments"),
        ({"filters": ["deny-site"], "args": {"deny-site": "b"}}, "args of plugin 'deny-site' must be a mapping"),
        (
            {"filters": ["deny-site"], "args": {"deny-site": {"zone": "b"}}},
            "profile 'p': invalid arguments for scheduler plugin 'deny-site'",
        ),
        ({"scores": "placement"}, "scores must be a list"),
        ({"scores": [{"weight": 2}]}, "each entry of scores must be a plugin name"),
        ({"scores": [{"name": "placement", "weight": -3}]}, "invalid weight -3 of score plugin 'placement'"),
        ({"scores": [{"name": "placement", "weight": "5"}]}, "invalid weight '5' of score plugin 'placement'"),
        ({"scores": ["placement", {"name": "placement", "weight": 2}]}, "lists score plugin 'placement' twice"),
        ({"filters": ["fill"]}, "lists 'fill' under filters, but it does not implement FilterPlugin"),
        ({"filters": ["deny-sight"]}, "No scheduler plugin named 'deny-sight'"),
        (
            {"filters": ["config-reading"]},
            "profile 'p': scheduler plugin 'config-reading' failed to start: RuntimeError: cannot read "
            r"/etc/rc-sched.conf \(raised in .*test_profile.py, line \d+, in __init__\); fix what it names, or leave "
            "the plugin out of the profile",
        ),
        (
            {"filters": ["no-args"]},
            "profile 'p': scheduler plugin 'no-args' cannot be created: NoArgsFilter must take the profile's args "
            "as its one argument",
        ),
    ],
    ids=[
        "args-unused", "args-not-mapping", "plugin-args-not-mapping", "plugin-rejects-args", "scores-not-list",
        "score-without-name", "negative-weight", "text-weight", "score-twice", "not-a-filter", "unknown-plugin",
        "constructor-raises", "constructor-without-args",
    ],
)  # fmt: skip
def test_profile_invalid(fields, message):
    with pytest.raises(PluginError, match=message):
        build_profile({"name": "p", "divide": "fill", **fields}, resolve)


def test_profile_not_mapping():
    with pytest.raises(PluginError, match="a scheduler profile must be a mapping"):
        build_profiles(["default"], resolve)
