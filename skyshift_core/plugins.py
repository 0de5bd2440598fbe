"""Plugin discovery: the one module that reads SkyShift's entry-point groups, loads plugins and lists them.

Named drivers (scheduler plugins, cluster managers, network providers, provisioners) are loaded with
stevedore and chosen by name through `load_driver`. Plugins in `skyshift.hooks` are registered with
pluggy by `hook_manager`. The API server (`GET /api/v1/plugins`), the CLI (`skyshift plugins list`) and
the controller manager call this module. A plugin that fails to import, or shares its name with another
plugin of its group, is reported as failed and never stops the other plugins from loading.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib.metadata
import inspect
import logging
import re
import threading
import types
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import pluggy
from stevedore import ExtensionManager

from skyshift_core import hookspecs
from skyshift_core.errors import PluginError
from skyshift_core.objects import Object, kinds, register_kind

logger = logging.getLogger(__name__)

SCHEDULER_PLUGINS = "skyshift.scheduler_plugins"
CLUSTER_MANAGERS = "skyshift.cluster_managers"
NETWORK_PROVIDERS = "skyshift.network_providers"
PROVISIONERS = "skyshift.provisioners"
HOOKS = "skyshift.hooks"


@dataclass(frozen=True)
class Group:
    """An entry-point group that the core owns."""

    name: str
    # Noun for one plugin of the group in messages, e.g. "cluster manager".
    singular: str
    # Description listed for a plugin whose object has neither `provides` nor a docstring.
    provides: str


GROUPS: dict[str, Group] = {
    group.name: group
    for group in (
        Group(SCHEDULER_PLUGINS, "scheduler plugin", "scheduler extension points"),
        Group(CLUSTER_MANAGERS, "cluster manager", "a ClusterManager implementation"),
        Group(NETWORK_PROVIDERS, "network provider", "cross-cluster service networking"),
        Group(PROVISIONERS, "provisioner", "new clusters on clouds"),
        Group(HOOKS, "hook plugin", "hook implementations"),
    )
}

# Groups whose plugins are named drivers, chosen one at a time by `load_driver`.
DRIVER_GROUPS = (SCHEDULER_PLUGINS, CLUSTER_MANAGERS, NETWORK_PROVIDERS, PROVISIONERS)


@dataclass(frozen=True)
class PluginInfo:
    """One row of `skyshift plugins list` and one item of `GET /api/v1/plugins`."""

    name: str
    group: str
    distribution: str
    version: str
    provides: str
    status: Literal["loaded", "failed"]
    # Why the plugin cannot be used; None when it loaded.
    error: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return dataclasses.asdict(self)


@dataclass(eq=False)
class PluginEntry:
    """One entry point of a SkyShift group: where it comes from and, once loaded, its object or error.

    `PluginCatalog.discover` builds entries that carry their `entry_point` and load on first use.
    Tests build entries by hand with `plugin` (a loaded object) or `error` (why loading failed) set.
    """

    name: str
    group: str
    distribution: str
    version: str = "0"
    # The "module:attribute" that the entry point names.
    target: str = ""
    plugin: Any = None
    error: BaseException | None = None
    entry_point: importlib.metadata.EntryPoint | None = field(default=None, repr=False)
    # Set by the catalog when another entry of the same group has the same name.
    conflict: str | None = None
    # True once loading and validation are done, successfully or not.
    checked: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.entry_point is None and self.plugin is None and self.error is None:
            raise ValueError(
                f"plugin entry {self.name!r} in group {self.group!r} has no entry_point, plugin or error; "
                "set one of them"
            )
        if not self.target:
            self.target = self.entry_point.value if self.entry_point is not None else _object_path(self.plugin)

    @property
    def failure(self) -> str | None:
        """Why this entry cannot be used, or None when it loaded and has no conflict."""
        if self.conflict and self.error is not None:
            return f"{self.conflict}; it also failed to load: {describe_error(self.error)}"
        if self.conflict:
            return self.conflict
        if self.error is not None:
            return describe_error(self.error)
        return None

    def info(self) -> PluginInfo:
        failure = self.failure
        provides = GROUPS[self.group].provides if self.plugin is None else describe_plugin(self.plugin, self.group)
        return PluginInfo(
            name=self.name,
            group=self.group,
            distribution=self.distribution,
            version=self.version,
            provides=provides,
            status="loaded" if failure is None else "failed",
            error=failure,
        )


class PluginCatalog:
    """The entries of SkyShift's groups; each entry is imported at most once, when first needed.

    `discover()` reads installed distributions. The constructor takes entries directly, so tests can
    build duplicates, aliases and failures in memory without installing packages.
    """

    def __init__(self, entries: Iterable[PluginEntry]):
        entries = list(entries)
        for entry in entries:
            if entry.group not in GROUPS:
                raise ValueError(
                    f"plugin entry {entry.name!r} has unknown group {entry.group!r}; expected one of {', '.join(GROUPS)}"
                )
        self._entries = _drop_repeats(entries)
        _mark_conflicts(self._entries)
        # Reentrant, because a plugin's module may itself call into the catalog while it is imported.
        self._lock = threading.RLock()
        # The distributions that `discover` read, searched for misspelt groups when a driver is missing.
        self._distributions: list[importlib.metadata.Distribution] = []

    @classmethod
    def discover(cls, distributions: Iterable[importlib.metadata.Distribution] | None = None) -> PluginCatalog:
        """Find the entry points of SkyShift's groups in `distributions` (default: every installed one).

        Only metadata is read here; modules are imported when an entry is first listed or loaded.
        """
        distributions = list(importlib.metadata.distributions() if distributions is None else distributions)
        entries = []
        for distribution_name, distribution in _first_of_each_name(distributions):
            for entry_point in distribution.entry_points:
                if entry_point.group not in GROUPS:
                    continue
                entries.append(
                    PluginEntry(
                        name=entry_point.name,
                        group=entry_point.group,
                        distribution=distribution_name,
                        version=distribution.version or "unknown",
                        entry_point=entry_point,
                    )
                )
        catalog = cls(entries)
        catalog._distributions = distributions
        return catalog

    def warnings(self) -> list[str]:
        """Describe the entry points that `discover` found in groups SkyShift does not read."""
        return stray_entry_points(self._distributions)

    def entries(self, group: str | None = None) -> list[PluginEntry]:
        """Load and return the entries of `group` (default: every group), in listing order."""
        selected = [entry for entry in self._entries if group is None or entry.group == group]
        self._ensure_loaded(selected)
        return selected

    def plugins(self) -> list[PluginInfo]:
        """Return one record per entry point. The record of a plugin installed under several names in
        one group (an alias such as `k8s` for `kubernetes`) lists the other names in `provides`."""
        entries = self.entries()
        infos = [entry.info() for entry in entries]
        names: dict[tuple[str, int], list[str]] = defaultdict(list)
        for entry, info in zip(entries, infos):
            if info.status == "loaded":
                names[(entry.group, id(entry.plugin))].append(entry.name)
        for index, (entry, info) in enumerate(zip(entries, infos)):
            others = [name for name in names.get((entry.group, id(entry.plugin)), []) if name != entry.name]
            if info.status == "loaded" and others:
                aliases = ", ".join(f"'{name}'" for name in others)
                infos[index] = dataclasses.replace(info, provides=f"{info.provides} (also installed as {aliases})")
        return infos

    def load_driver(self, group: str, name: str) -> Any:
        """Return the object (usually a class) that driver `name` of `group` names; import only that entry.

        Raises PluginError when the group has no named drivers, no plugin has that name, several
        entry points declare the name, or the plugin failed to load.
        """
        if group not in DRIVER_GROUPS:
            raise PluginError(
                f"Unknown driver group {group!r}; expected one of {', '.join(DRIVER_GROUPS)}",
                details={"group": group, "name": name},
            )
        singular = GROUPS[group].singular
        matches = [entry for entry in self._entries if entry.group == group and entry.name == name]
        if not matches:
            # Only on this error path are the group's other plugins imported, to tell which of them work.
            others = [entry for entry in self._entries if entry.group == group]
            self._ensure_loaded(others)
            installed = sorted({entry.name for entry in others if entry.failure is None})
            failed = sorted({entry.name for entry in others if entry.failure is not None} - set(installed))
            close = difflib.get_close_matches(name, installed + failed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            broken = f" (failed to load, see skyshift plugins list: {', '.join(failed)})" if failed else ""
            # A plugin of that name in a misspelt group explains the miss better than any other hint.
            strays = stray_entry_points(self._distributions, name=name)
            if strays:
                hint = f". {'; '.join(strays)}"
            raise PluginError(
                f"No {singular} named {name!r} in group {group!r}; installed: {', '.join(installed) or 'none'}"
                f"{broken}{hint}",
                details={"group": group, "name": name, "installed": installed, "failed": failed},
            )

        entry = matches[0]
        if entry.conflict:
            raise PluginError(entry.conflict, details={"group": group, "name": name})

        self._ensure_loaded(matches)
        if entry.error is not None:
            raise PluginError(
                f"{singular.capitalize()} {name!r} from {entry.distribution} {entry.version} failed to load: "
                f"{describe_error(entry.error)}; fix or reinstall that distribution",
                details={"group": group, "name": name, "distribution": entry.distribution},
            ) from entry.error
        return entry.plugin

    def _ensure_loaded(self, entries: list[PluginEntry]) -> None:
        with self._lock:
            unchecked = [entry for entry in entries if not entry.checked]
            by_group: dict[str, list[PluginEntry]] = defaultdict(list)
            for entry in unchecked:
                if entry.plugin is None and entry.error is None:
                    by_group[entry.group].append(entry)
            for group, pending in by_group.items():
                _load_with_stevedore(group, pending)

            for entry in unchecked:
                if entry.group == HOOKS and entry.error is None:
                    _validate_hook_plugin(entry)
                elif entry.group in _BASE_CLASSES and entry.error is None:
                    _validate_driver_class(entry)
                entry.checked = True


class _EntryPointManager(ExtensionManager):
    """stevedore's manager over a given list of entry points, so that each keeps its distribution.

    stevedore's own scan returns entry points without their distribution, which `skyshift plugins list`
    must show, so the catalog reads entry points itself and hands them over.
    """

    def __init__(self, group: str, entry_points: list[importlib.metadata.EntryPoint], on_load_failure_callback):
        self._given_entry_points = entry_points
        super().__init__(group, on_load_failure_callback=on_load_failure_callback)

    def list_entry_points(self) -> list[importlib.metadata.EntryPoint]:
        return self._given_entry_points

    def _load_one_plugin(self, *args: Any, **kwargs: Any):
        # stevedore passes only Exception subclasses other than AssertionError to the failure callback.
        # Wrapping an AssertionError or SystemExit keeps one plugin's module from stopping the others.
        try:
            return super()._load_one_plugin(*args, **kwargs)
        except (AssertionError, SystemExit) as error:
            raise _WrappedLoadError() from error


class _WrappedLoadError(Exception):
    """Carries an error that stevedore would not pass to the failure callback; the original is its __cause__."""


def _names_missing_target(target: str, error: BaseException) -> bool:
    """Tell whether a load error shows that the entry point's own module or object does not exist,
    as a typo in its value does, rather than that the plugin failed inside its module."""
    module = target.partition(":")[0].strip()
    if isinstance(error, ModuleNotFoundError) and error.name:
        return module == error.name or module.startswith(error.name + ".")
    if isinstance(error, AttributeError):
        owner = getattr(error, "obj", None)
        return isinstance(owner, types.ModuleType) and owner.__name__ == module
    return False


def _load_with_stevedore(group: str, entries: list[PluginEntry]) -> None:
    by_entry_point = {id(entry.entry_point): entry for entry in entries}

    def record_failure(_manager: Any, entry_point: importlib.metadata.EntryPoint, error: BaseException) -> None:
        if isinstance(error, _WrappedLoadError) and error.__cause__ is not None:
            error = error.__cause__
        entry = by_entry_point[id(entry_point)]
        if _names_missing_target(entry.target, error):
            error = PluginError(
                f"{describe_error(error)}; the entry point names {entry.target!r}: correct that value in the "
                f"distribution's entry points, or reinstall {entry.distribution}"
            )
        entry.error = error
        logger.warning(
            "Plugin %r in group %s from %s %s failed to load, so it is skipped: %s",
            entry.name,
            group,
            entry.distribution,
            entry.version,
            describe_error(error),
        )

    manager = _EntryPointManager(group, [entry.entry_point for entry in entries], record_failure)
    for extension in manager.extensions:
        entry = by_entry_point[id(extension.entry_point)]
        if extension.plugin is not None:
            entry.plugin = extension.plugin
            continue
        entry.error = PluginError(f"entry point target {entry.target!r} is None; point it at a class or module")
        logger.warning(
            "Plugin %r in group %s from %s %s is None, so it is skipped",
            entry.name,
            group,
            entry.distribution,
            entry.version,
        )


def _base_classes() -> dict[str, tuple[type, str]]:
    from skyshift_core.cluster_manager import ClusterManager
    from skyshift_core.scheduler.framework import Plugin

    return {
        CLUSTER_MANAGERS: (ClusterManager, "skyshift_core.cluster_manager.ClusterManager"),
        SCHEDULER_PLUGINS: (Plugin, "one of FilterPlugin, ScorePlugin, DividePlugin or ReservePlugin"),
    }


# The groups whose plugins must subclass a core class, so that a wrong target fails when listed, not when used.
_BASE_CLASSES = (CLUSTER_MANAGERS, SCHEDULER_PLUGINS)


def _validate_driver_class(entry: PluginEntry) -> None:
    """Check that a cluster manager or scheduler plugin is a class of the right base; record the problem as its error."""
    base, expected = _base_classes()[entry.group]
    plugin = entry.plugin
    if inspect.isclass(plugin) and issubclass(plugin, base):
        return
    found = f"class {plugin.__module__}.{plugin.__qualname__}" if inspect.isclass(plugin) else f"{type(plugin).__name__} {plugin!r}"
    entry.error = PluginError(
        f"entry point target {entry.target!r} is a {found}, but a {GROUPS[entry.group].singular} must be a class "
        f"that subclasses {expected}; point the entry point at such a class"
    )
    logger.warning(
        "Plugin %r in group %s from %s %s is invalid, so it is skipped: %s",
        entry.name, entry.group, entry.distribution, entry.version, entry.error,
    )  # fmt: skip


def _validate_hook_plugin(entry: PluginEntry) -> None:
    """Check a hook plugin against the hook specifications; record the first problem as its error."""
    manager = new_hook_manager()
    try:
        manager.register(entry.plugin, name=entry.name)
        manager.check_pending()
    except (pluggy.PluginValidationError, ValueError) as error:
        entry.error = error
    else:
        if not manager.get_hookcallers(entry.plugin):
            entry.error = PluginError(
                f"{entry.target} implements no SkyShift hook; decorate its functions with "
                f"skyshift_core.hookspecs.hookimpl and name each after a hook: {', '.join(hook_names())}"
            )
    if entry.error is not None:
        logger.warning(
            "Hook plugin %r from %s %s is invalid, so it is skipped: %s",
            entry.name,
            entry.distribution,
            entry.version,
            describe_error(entry.error),
        )


def _first_of_each_name(
    distributions: Iterable[importlib.metadata.Distribution],
) -> Iterable[tuple[str, importlib.metadata.Distribution]]:
    # A distribution installed twice on sys.path (an editable checkout and a wheel, say) counts once:
    # the first one found wins, as Python's import system and importlib.metadata.entry_points() decide.
    seen: set[str] = set()
    for distribution in distributions:
        name = distribution.metadata["Name"] or "unknown"
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        seen.add(key)
        yield name, distribution


def stray_entry_points(
    distributions: Iterable[importlib.metadata.Distribution] | None = None, name: str | None = None
) -> list[str]:
    """Describe the entry points in a `skyshift` group that SkyShift does not read, such as a
    misspelt `skyshift.cluster_manager`, one line each with the closest group it reads; only
    those called `name` when it is given."""
    if distributions is None:
        distributions = importlib.metadata.distributions()
    found = []
    for distribution_name, distribution in _first_of_each_name(distributions):
        for entry_point in distribution.entry_points:
            group = entry_point.group
            if group in GROUPS or not group.lower().startswith("skyshift"):
                continue
            if name is not None and entry_point.name != name:
                continue
            close = difflib.get_close_matches(group, list(GROUPS), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else f"; SkyShift reads {', '.join(GROUPS)}"
            found.append(
                f"{distribution_name} declares entry point {entry_point.name!r} in group {group!r}, "
                f"which SkyShift does not read{hint}"
            )
    return sorted(found)


def _drop_repeats(entries: Iterable[PluginEntry]) -> list[PluginEntry]:
    unique: dict[tuple[str, str, str, str], PluginEntry] = {}
    for entry in entries:
        unique.setdefault((entry.group, entry.name, entry.distribution, entry.target), entry)
    group_order = list(GROUPS)
    return sorted(unique.values(), key=lambda entry: (group_order.index(entry.group), entry.name, entry.distribution))


def _mark_conflicts(entries: list[PluginEntry]) -> None:
    # Only a shared name is a conflict. An alias, a second name for the same object, is not.
    by_name: dict[tuple[str, str], list[PluginEntry]] = defaultdict(list)
    for entry in entries:
        by_name[(entry.group, entry.name)].append(entry)
    for (group, name), same_name in by_name.items():
        if len(same_name) < 2:
            continue
        sources = [f"{entry.distribution} {entry.version} ({entry.target})" for entry in same_name]
        distributions = {entry.distribution for entry in same_name}
        advice = (
            "uninstall all but one of these distributions"
            if len(distributions) > 1
            else f"fix the entry points of {same_name[0].distribution}"
        )
        message = (
            f"Duplicate {GROUPS[group].singular} name {name!r} in group {group!r}: declared by "
            f"{_join_words(sources)}; {advice}"
        )
        for entry in same_name:
            entry.conflict = message
        # Not a warning here: every CLI command discovers plugins, and most use none of them. The
        # conflict is reported where it matters: by load_driver's error, `skyshift plugins list`,
        # and `hook_manager` for hooks.
        logger.debug("%s; every plugin with that name is skipped", message)


def _join_words(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _object_path(plugin: Any) -> str:
    """`module:qualname` of a class or function (of the class, for an instance); a module's name."""
    if inspect.ismodule(plugin):
        return plugin.__name__
    target = plugin if inspect.isclass(plugin) or inspect.isroutine(plugin) else type(plugin)
    return f"{target.__module__}:{target.__qualname__}"


def describe_error(error: BaseException) -> str:
    """Format an error as one line, `Type: message`, leaving out the type of the core's own PluginError."""
    message = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
    if isinstance(error, PluginError):
        return message
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def describe_plugin(plugin: Any, group: str) -> str:
    """Return a plugin's short description: `provides`, else its docstring's first line, else the group's."""
    provides = getattr(plugin, "provides", None)
    if isinstance(provides, str) and provides.strip():
        return provides.strip()
    docstring = getattr(plugin, "__doc__", None)
    if isinstance(docstring, str) and docstring.strip():
        return inspect.cleandoc(docstring).splitlines()[0].strip()
    return GROUPS[group].provides


@functools.cache
def default_catalog() -> PluginCatalog:
    """Return the catalog of every installed distribution, discovered once per process.

    Call `default_catalog.cache_clear()` to discover again after installing or removing a plugin.
    """
    return PluginCatalog.discover()


def list_plugins(catalog: PluginCatalog | None = None) -> list[PluginInfo]:
    """Load every plugin of every SkyShift group and return one record per entry point."""
    return (catalog if catalog is not None else default_catalog()).plugins()


def plugins_payload(catalog: PluginCatalog | None = None) -> dict[str, Any]:
    """Return the JSON body of `GET /api/v1/plugins` and `skyshift plugins list --json`.

    `warnings` names the entry points declared in misspelt groups, which no item lists.
    """
    catalog = catalog if catalog is not None else default_catalog()
    return {
        "kind": "PluginList",
        "items": [info.to_dict() for info in list_plugins(catalog)],
        "warnings": catalog.warnings(),
    }


def load_driver(group: str, name: str, catalog: PluginCatalog | None = None) -> Any:
    """Return the plugin object named `name` in driver group `group`; raise PluginError if there is none."""
    return (catalog if catalog is not None else default_catalog()).load_driver(group, name)


def hook_names() -> list[str]:
    """Return the names of the hooks that `skyshift_core.hookspecs` specifies."""
    marker = f"{hookspecs.PROJECT_NAME}_spec"
    return sorted(name for name, value in vars(hookspecs).items() if callable(value) and hasattr(value, marker))


def new_hook_manager() -> pluggy.PluginManager:
    """Create an empty pluggy manager with SkyShift's hook specifications added."""
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    return manager


def hook_manager(catalog: PluginCatalog | None = None) -> pluggy.PluginManager:
    """Build a pluggy manager with every `skyshift.hooks` plugin that loaded and passed validation.

    Plugins that failed to import or validate, or share a name, are left out; `list_plugins` shows why.
    """
    catalog = catalog if catalog is not None else default_catalog()
    manager = new_hook_manager()
    conflicts: set[str] = set()
    for entry in catalog.entries(HOOKS):
        if entry.conflict is not None and entry.conflict not in conflicts:
            conflicts.add(entry.conflict)
            logger.warning("%s; every hook plugin with that name is skipped", entry.conflict)
        if entry.failure is not None:
            continue
        if manager.is_registered(entry.plugin):
            # An alias: the same object under a second name is registered once.
            continue
        manager.register(entry.plugin, name=entry.name)
    return manager


def collect_registrations(manager: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> list[Any]:
    """Call the `register_*` hook `hook_name` and concatenate the items that its implementations return.

    Raises PluginError when an implementation returns something other than an iterable or None.
    """
    caller = getattr(manager.hook, hook_name, None)
    if not hook_name.startswith("register_") or caller is None or not caller.has_spec():
        collecting = [name for name in hook_names() if name.startswith("register_")]
        raise ValueError(f"{hook_name!r} is not a collecting hook; expected one of {', '.join(collecting)}")
    items: list[Any] = []
    for result in caller(**kwargs):
        if result is None:
            continue
        if isinstance(result, (str, bytes)) or not isinstance(result, Iterable):
            raise PluginError(
                f"An implementation of {hook_name} returned {result!r} of type {type(result).__name__}; "
                "it must return a list (or None)"
            )
        items.extend(result)
    return items


def apply_kind_hooks(manager: pluggy.PluginManager | None = None) -> list[type[Object]]:
    """Register the kinds that `register_kinds` implementations return; return the kinds newly added.

    Every returned model is checked before any is registered. PluginError names the offending class
    when it is not an Object subclass, has no default `kind` or no `plural`, or takes a kind name or
    plural that another model has.
    """
    manager = manager if manager is not None else hook_manager()
    models = collect_registrations(manager, "register_kinds")

    registered = kinds()
    new: dict[str, type[Object]] = {}
    for model in models:
        kind = _check_kind_model(model)
        existing = registered.get(kind) or new.get(kind)
        if existing is model:
            continue
        if existing is not None:
            raise PluginError(
                f"Kind {kind!r} of {_object_path(model)} is already registered by {_object_path(existing)}; "
                "give the plugin's kind another name"
            )
        for other in [*registered.values(), *new.values()]:
            if other.plural == model.plural:
                raise PluginError(
                    f"Kind {kind!r} of {_object_path(model)} uses plural {model.plural!r}, which "
                    f"{_object_path(other)} already uses; set another plural"
                )
        new[kind] = model

    for kind, model in new.items():
        try:
            register_kind(model)
        except ValueError as error:
            raise PluginError(f"Kind {kind!r} of {_object_path(model)} cannot be registered: {error}") from error
        logger.info("Registered kind %s (%s) from plugin class %s", kind, model.plural, _object_path(model))
    return list(new.values())


def _check_kind_model(model: Any) -> str:
    if not (inspect.isclass(model) and issubclass(model, Object)):
        raise PluginError(
            f"register_kinds returned {model!r}, which is not a subclass of skyshift_core.objects.Object; "
            "return model classes"
        )
    kind = model.model_fields["kind"].default
    if not isinstance(kind, str) or not kind:
        raise PluginError(
            f"{_object_path(model)} gives 'kind' no default; declare it as kind: Literal['Name'] = 'Name'"
        )
    if not model.plural:
        raise PluginError(f"Kind {kind!r} of {_object_path(model)} sets no plural; set the class variable plural")
    return kind
