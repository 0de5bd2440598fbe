"""Scheduler profiles: which plugins run at each extension point, with which weights and arguments.

The controller manager's configuration names the profiles; a Job picks one with
`spec.scheduler_name`. Without configuration there are two: `default` (divides with spread) and
`binpack` (divides with binpack, present only when that plugin is installed).

    profiles:
      - name: default
        filters: [cluster-ready, placement, filter-policy, resources-fit]
        scores: [{name: placement, weight: 2}]
        divide: spread
        args: {spread: {max_skew: 1}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from skyshift_core.errors import PluginError
from skyshift_core.scheduler.framework import DividePlugin, FilterPlugin, Plugin, ReservePlugin, ScorePlugin

DEFAULT_FILTERS = ("cluster-ready", "placement", "filter-policy", "resources-fit")
DEFAULT_SCORES = (("placement", 1),)
PLUGIN_GROUP = "skyshift.scheduler_plugins"


@dataclass
class Profile:
    name: str
    filters: list[FilterPlugin]
    scorers: list[tuple[ScorePlugin, int]]
    divider: DividePlugin
    reservers: list[ReservePlugin] = field(default_factory=list)


def _load_plugin(name: str, args: Mapping[str, Any], resolve: Callable[[str], type]) -> Plugin:
    plugin_class = resolve(name)
    try:
        return plugin_class(args)
    except (TypeError, ValueError) as error:
        raise PluginError(f"invalid arguments for scheduler plugin {name!r}: {error}") from error


def _expect(plugin: Plugin, kind: type, point: str, profile: str) -> None:
    if not isinstance(plugin, kind):
        raise PluginError(
            f"profile {profile!r} lists {plugin.name or type(plugin).__name__!r} under {point}, "
            f"but it does not implement {kind.__name__}"
        )


def build_profile(spec: Mapping[str, Any], resolve: Callable[[str], type]) -> Profile:
    """Instantiate one profile from configuration; raise PluginError naming what is wrong."""
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise PluginError(f"a scheduler profile needs a name, got {spec!r}")
    known = {"name", "filters", "scores", "divide", "reserve", "args"}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise PluginError(f"profile {name!r} has unknown field(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    args: Mapping[str, Mapping[str, Any]] = spec.get("args") or {}
    instances: dict[str, Plugin] = {}

    def instance(plugin_name: str) -> Plugin:
        if plugin_name not in instances:
            instances[plugin_name] = _load_plugin(plugin_name, args.get(plugin_name) or {}, resolve)
        return instances[plugin_name]

    filters = [instance(plugin_name) for plugin_name in spec.get("filters", DEFAULT_FILTERS)]
    for plugin in filters:
        _expect(plugin, FilterPlugin, "filters", name)

    scorers: list[tuple[ScorePlugin, int]] = []
    for entry in spec.get("scores", [{"name": n, "weight": w} for n, w in DEFAULT_SCORES]):
        entry = {"name": entry, "weight": 1} if isinstance(entry, str) else entry
        weight = entry.get("weight", 1)
        if not isinstance(weight, int) or weight < 1:
            raise PluginError(f"profile {name!r}: weight of score plugin {entry.get('name')!r} must be a positive integer")
        plugin = instance(entry["name"])
        _expect(plugin, ScorePlugin, "scores", name)
        scorers.append((plugin, weight))

    divide_name = spec.get("divide")
    if not divide_name:
        raise PluginError(f"profile {name!r} needs a divide plugin, such as 'spread' or 'binpack'")
    divider = instance(divide_name)
    _expect(divider, DividePlugin, "divide", name)
    # The divide plugin's own score, when it has one, counts with weight 1 unless listed already.
    if isinstance(divider, ScorePlugin) and all(plugin is not divider for plugin, _ in scorers):
        scorers.append((divider, 1))

    reservers = [instance(plugin_name) for plugin_name in spec.get("reserve", [])]
    for plugin in reservers:
        _expect(plugin, ReservePlugin, "reserve", name)
    return Profile(name, filters, scorers, divider, reservers)


def default_profile_specs(installed: set[str]) -> list[dict[str, Any]]:
    """The profiles used without configuration: `default` (spread) and `binpack`, each only when
    its policy plugin is installed."""
    specs = []
    if "spread" in installed:
        specs.append({"name": "default", "divide": "spread"})
    if "binpack" in installed:
        specs.append({"name": "binpack", "divide": "binpack"})
    return specs


def build_profiles(specs: list[Mapping[str, Any]], resolve: Callable[[str], type]) -> dict[str, Profile]:
    profiles: dict[str, Profile] = {}
    for spec in specs:
        profile = build_profile(spec, resolve)
        if profile.name in profiles:
            raise PluginError(f"scheduler profile {profile.name!r} is defined twice")
        profiles[profile.name] = profile
    return profiles
