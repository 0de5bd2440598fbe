"""Pieces every CLI command shares: error reporting, the --server option and building a client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import click
import typer
import yaml
from typer.core import TyperGroup

from skyshift_core.cli.config import Connection, default_config_path, resolve_connection, resolve_server
from skyshift_core.client import SkyShiftClient
from skyshift_core.errors import SkyShiftError, UnauthorizedError
from skyshift_core.objects import Object


class SkyShiftGroup(TyperGroup):
    """The root command group: a SkyShiftError from any command prints `Error: message` and exits 1.

    Users see the server's message, never a traceback, for every error the core raises on purpose.
    """

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UnauthorizedError as error:
            # The token often comes from a client configuration written for another control plane.
            hint = f"(client configuration: {default_config_path()}; set SKYSHIFT_CONFIG or --token to use another)"
            typer.echo(f"Error: {error.message} {hint}", err=True)
            raise typer.Exit(1) from None
        except SkyShiftError as error:
            typer.echo(f"Error: {error.message}", err=True)
            raise typer.Exit(1) from None


@dataclass
class CliState:
    """Options given before the command name, kept in the root click context."""

    server: str | None = None
    token: str | None = None
    ca_file: str | None = None


ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server",
        "-s",
        help="API server URL. Default: $SKYSHIFT_SERVER, then the client config, then http://127.0.0.1:50051.",
        show_default=False,
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="Bearer token to send. Default: $SKYSHIFT_TOKEN, then the current context's token for its server.",
        show_default=False,
    ),
]
CaFileOption = Annotated[
    str | None,
    typer.Option(
        "--certificate-authority",
        help="PEM file with the CA that signed an https API server's certificate. Default: "
        "$SKYSHIFT_CA_FILE, then the current context's, then the system's trusted CAs.",
        show_default=False,
    ),
]
NamespaceOption = Annotated[
    str | None, typer.Option("--namespace", "-n", help="Namespace of namespaced kinds. Default: default.")
]


def server_for(ctx: click.Context, server: str | None) -> str:
    """Return the command's --server, else the global --server, else `resolve_server`'s choice."""
    root = ctx.find_root().obj
    global_server = root.server if isinstance(root, CliState) else None
    return resolve_server(server or global_server)


def connection_for(ctx: click.Context, server: str | None) -> Connection:
    """Return the server and credentials for a command, from its options, the global ones and the config."""
    root = ctx.find_root().obj
    state = root if isinstance(root, CliState) else CliState()
    return resolve_connection(server or state.server, state.token, state.ca_file)


def client_for(ctx: click.Context, server: str | None, timeout: float | None = None) -> SkyShiftClient:
    connection = connection_for(ctx, server)
    options = {"timeout": timeout} if timeout is not None else {}
    return SkyShiftClient(connection.server, token=connection.token, ca_file=connection.ca_file, **options)


def object_ref(model: type[Object], name: str) -> str:
    """Name an object as kubectl does in its output: `job.skyshift/NAME`."""
    return f"{model.singular}.skyshift/{name}"


def not_found_message(model: type[Object], name: str, namespace: str | None) -> str:
    if model.namespaced:
        return f'{model.singular} "{name}" not found in namespace "{namespace}"'
    return f'{model.singular} "{name}" not found'


def kind_name(model: type[Object]) -> str:
    return model.model_fields["kind"].default


class _BlockStyleDumper(yaml.SafeDumper):
    """YAML output that writes multi-line strings (such as a Job's `run` script) as `|` blocks."""


def _represent_string(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockStyleDumper.add_representer(str, _represent_string)


def to_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_BlockStyleDumper, sort_keys=False, default_flow_style=False, allow_unicode=True)
