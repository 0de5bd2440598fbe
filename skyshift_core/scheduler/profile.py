"""Scheduler profiles: which plugins run at each extension point, with which weights and arguments.

The controller manager's configuration names the profiles; a Job picks one with
`spec.scheduler_name`. Without configuration there are two: `default` (divides with spread) and
`binpack` (divides with binpack, present only when that plugin is installed). A configured list
replaces both, so it must define `default` itself if Jobs that name no profile should run.

    profiles:
      - name: default
        filters: [deny-site]            # run after the built-in filters
        disabled_filters: [placement]   # built-in filters to leave out; ["*"] leaves out all four
        scores: [{name: placement, weight: 2}]
        divide: spread
        args: {spread: {max_skew: 1}}

Filters merge with the built-in ones, as Kubernetes merges `plugins.filter.enabled` with its
defaults. The built-in filters run first, in the order of DEFAULT_FILTERS and without those in
`disabled_filters`, and then the listed ones. A listed `scores` instead replaces the default
scores (placement with weight 1). `args` maps a plugin's name to the mapping that its constructor
receives, for whichever extension point lists it.
"""

from __future__ import annotations

import inspect
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from skyshift_core.errors import PluginError
from skyshift_core.plugins import describe_error
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
        inspect.signature(plugin_class).bind(args)
    except TypeError as error:
        raise PluginError(
            f"scheduler plugin {name!r} cannot be created: {plugin_class.__qualname__} must take the profile's "
            f"args as its one argument, as Plugin.__init__(self, args) does ({error}); this is a bug in the plugin"
        ) from error
    except ValueError:
        pass  # No signature to read (a class implemented in C); the call below raises the error that names the problem.
    try:
        return plugin_class(args)
    except (TypeError, ValueError) as error:
        raise PluginError(f"invalid arguments for scheduler plugin {name!r}: {error}") from error
    except (Exception, SystemExit) as error:
        raise PluginError(
            f"scheduler plugin {name!r} failed to start: {describe_error(error)}{_raised_at(error)}; fix what it "
            "names, or leave the plugin out of the profile"
        ) from error


def _raised_at(error: BaseException) -> str:
    """Return where an error was raised, as a traceback's last line names it, for a message."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return ""
    frame = frames[-1]
    return f" (raised in {frame.filename}, line {frame.lineno}, in {frame.name})"


def _expect(plugin: Plugin, kind: type, point: str, profile: str) -> None:
    if not isinstance(plugin, kind):
        raise PluginError(
            f"profile {profile!r} lists {plugin.name or type(plugin).__name__!r} under {point}, "
            f"but it does not implement {kind.__name__}"
        )


def build_profile(spec: Mapping[str, Any], resolve: Callable[[str], type]) -> Profile:
    """Instantiate one profile from configuration; raise PluginError naming what is wrong."""
    if not isinstance(spec, Mapping):
        raise PluginError(f"a scheduler profile must be a mapping with name, divide and other fields; got {spec!r}")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise PluginError(f"a scheduler profile needs a name, got {spec!r}")
    known = {"name", "filters", "disabled_filters", "scores", "divide", "reserve", "args"}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise PluginError(f"profile {name!r} has unknown field(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    args = spec.get("args") or {}
    if not isinstance(args, Mapping):
        raise PluginError(
            f"profile {name!r}: args must map plugin names to their arguments, for example "
            f"{{spread: {{max_skew: 2}}}}; got {args!r}"
        )
    instances: dict[str, Plugin] = {}

    def instance(plugin_name: str) -> Plugin:
        if plugin_name not in instances:
            plugin_args = args.get(plugin_name) or {}
            if not isinstance(plugin_args, Mapping):
                raise PluginError(
                    f"profile {name!r}: args of plugin {plugin_name!r} must be a mapping of argument names "
                    f"to values; got {plugin_args!r}"
                )
            try:
                instances[plugin_name] = _load_plugin(plugin_name, plugin_args, resolve)
            except PluginError as error:
                if error.message.startswith(("invalid arguments", "scheduler plugin")):
                    raise PluginError(f"profile {name!r}: {error.message}") from error
                raise
        return instances[plugin_name]

    filters = [instance(plugin_name) for plugin_name in filter_names(spec)]
    for plugin in filters:
        _expect(plugin, FilterPlugin, "filters", name)

    scorers: list[tuple[ScorePlugin, int]] = []
    score_entries = spec.get("scores", [{"name": n, "weight": w} for n, w in DEFAULT_SCORES])
    if not isinstance(score_entries, list):
        raise PluginError(
            f"profile {name!r}: scores must be a list, for example [{{name: placement, weight: 1}}]; "
            f"got {score_entries!r}"
        )
    listed_scores: set[str] = set()
    for entry in score_entries:
        entry = {"name": entry, "weight": 1} if isinstance(entry, str) else entry
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            raise PluginError(
                f"profile {name!r}: each entry of scores must be a plugin name or {{name: NAME, weight: N}}; "
                f"got {entry!r}"
            )
        weight = entry.get("weight", 1)
        if not isinstance(weight, int) or isinstance(weight, bool) or weight < 1:
            raise PluginError(
                f"profile {name!r}: invalid weight {weight!r} of score plugin {entry.get('name')!r}: expected a "
                "positive integer, such as 1 or 5"
            )
        if entry["name"] in listed_scores:
            raise PluginError(
                f"profile {name!r} lists score plugin {entry['name']!r} twice; list it once, with the sum of the weights"
            )
        listed_scores.add(entry["name"])
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

    reservers = [instance(plugin_name) for plugin_name in _names(spec, "reserve")]
    for plugin in reservers:
        _expect(plugin, ReservePlugin, "reserve", name)

    # Arguments for a plugin that no extension point lists would be ignored, which hides typos.
    unused = sorted(set(args) - set(instances))
    if unused:
        raise PluginError(
            f"profile {name!r} has args for {', '.join(map(repr, unused))}, which it does not use; "
            f"its plugins are {', '.join(sorted(instances))}"
        )
    return Profile(name, filters, scorers, divider, reservers)


def _names(spec: Mapping[str, Any], key: str) -> list[str]:
    """Return the plugin names listed under `key` of a profile; raise PluginError unless they are a list of strings."""
    names = spec.get(key) or []
    if not isinstance(names, list) or not all(isinstance(item, str) and item for item in names):
        raise PluginError(
            f"profile {spec.get('name')!r}: {key} must be a list of plugin names, for example [cluster-ready]; "
            f"got {names!r}"
        )
    return names


def filter_names(spec: Mapping[str, Any]) -> list[str]:
    """Return the filter plugins of a profile in the order they run: the built-in filters not in
    `disabled_filters`, then the profile's `filters` that are not among them.

    `disabled_filters: ["*"]` leaves out every built-in filter, so `filters` alone decides, in its order.
    """
    listed = _names(spec, "filters")
    disabled = _names(spec, "disabled_filters")
    profile = spec.get("name")
    if "*" in disabled:
        if len(disabled) > 1:
            raise PluginError(
                f"profile {profile!r}: disabled_filters {disabled!r} mixes '*' with names; "
                "'*' alone already leaves out every built-in filter"
            )
        return list(dict.fromkeys(listed))
    not_builtin = [filter_name for filter_name in disabled if filter_name not in DEFAULT_FILTERS]
    if not_builtin:
        raise PluginError(
            f"profile {profile!r}: disabled_filters names {', '.join(map(repr, not_builtin))}, which is not a "
            f"built-in filter; valid: {', '.join(DEFAULT_FILTERS)} or '*'"
        )
    both = [filter_name for filter_name in disabled if filter_name in listed]
    if both:
        raise PluginError(
            f"profile {profile!r} lists {', '.join(map(repr, both))} under both filters and disabled_filters; "
            "remove it from one of them"
        )
    enabled = [filter_name for filter_name in DEFAULT_FILTERS if filter_name not in disabled]
    return enabled + [filter_name for filter_name in dict.fromkeys(listed) if filter_name not in enabled]


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
