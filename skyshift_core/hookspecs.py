"""Hook specifications for plugins in the `skyshift.hooks` entry-point group (part of the plugin API).

Hook names follow one grammar: a `register_*` hook collects. Each implementation returns an iterable of
items, or None for nothing, and the core concatenates the results of all plugins. The one exception is
`register_cli_commands`, which adds its commands to the application it receives. A plugin marks its
implementations with `hookimpl` from this module, and `skyshift_core.plugins` loads and validates them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import typer
    from fastapi import APIRouter

    from skyshift_core.objects import Object

PROJECT_NAME = "skyshift"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_kinds() -> Iterable[type[Object]] | None:
    """Return object model classes that add kinds to the object model.

    Called by `skyshift_core.plugins.apply_kind_hooks()`, which a component runs once at startup,
    before it parses or serves any object. Each class must subclass `skyshift_core.objects.Object`,
    give `kind` a Literal default, and set a `plural` that no other kind uses. A kind name or plural
    that is already taken stops startup with a PluginError that names both classes, because two
    models for one kind would make stored objects ambiguous. Returning the same class again is
    harmless.
    """


@hookspec
def register_api_routers() -> Iterable[APIRouter] | None:
    """Return FastAPI routers that the API server mounts under `/api/v1`.

    Called once for each API application the server builds, after the built-in routes are added.
    Route paths are relative to `/api/v1` and must not shadow a built-in path (a kind's plural,
    `namespaces`, `plugins`). Handlers must report failures by raising `skyshift_core.errors`
    exceptions, so the server maps them to HTTP statuses in its one place. Return new router objects
    on each call, because a router mounted in one application must not be mutated by another.
    """


@hookspec
def register_cli_commands(app: typer.Typer) -> None:
    """Add commands to the root `skyshift` typer application `app`.

    Called once per CLI invocation, before the command line is parsed, so it also runs for `--help`.
    Implementations add commands with `app.command()` or sub-applications with `app.add_typer()` and
    must not do I/O or slow imports here: put that work inside the command functions. Command names
    must not clash with built-in commands. The return value is ignored.
    """


@hookspec
def register_controllers() -> Iterable[Callable[..., Any]] | None:
    """Return controller factories, which the controller manager calls to build its controllers.

    The controller manager calls this hook once at startup and calls each factory only after it wins
    leader election, so a factory must not contact the API server or a cluster before it is called.
    NOTE: the controller runtime does not exist yet; until it does, a factory is any callable.
    """
