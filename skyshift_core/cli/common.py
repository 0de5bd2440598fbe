"""Pieces every CLI command shares: error reporting, the --server option and building a client."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Annotated, Any

import click
import typer
import yaml
from typer.core import TyperGroup

from skyshift_core.cli.config import (
    ClientConfig,
    ContextNamespace,
    Connection,
    default_config_path,
    resolve_connection,
    resolve_server,
    same_server,
)
from skyshift_core.client import SkyShiftClient
from skyshift_core.errors import InvalidError, ServerUnreachableError, SkyShiftError, UnauthorizedError
from skyshift_core.objects import Object

# `-o=name`: a short option joined to its value by '=', which kubectl accepts and click does not.
_SHORT_OPTION_WITH_EQUALS = re.compile(r"^(-[A-Za-z0-9])=(.*)$", re.DOTALL)


# Placeholders of option values in help, by parameter name, where the upper-case name says less.
_METAVARS = {
    "filename": "FILE",
    "files": "FILE",
    "server": "URL",
    "output": "FORMAT",
    "timeout": "SECONDS",
    "watch_timeout": "SECONDS",
    "certificate_authority": "FILE",
}


def name_metavars(command: click.Command) -> None:
    """Give every parameter of `command` and its subcommands that takes a value a placeholder such as
    NAMESPACE or FILE, as click and argparse print them, in place of typer's Python types (<list[str]>)."""
    for param in command.params:
        # Typer's parameters are not click's classes, so the kind of parameter is read by name.
        if param.param_type_name == "argument":
            # Typer prints an argument's Python type after its name (KIND <str>); the name says enough.
            param.display_type_rich = lambda ctx: ""  # type: ignore[method-assign]
            continue
        if param.metavar is not None or getattr(param, "is_flag", False) or getattr(param, "count", False):
            continue
        name = param.name or "value"
        param.metavar = _METAVARS.get(name, name.upper())
    for subcommand in getattr(command, "commands", {}).values():
        name_metavars(subcommand)


class SkyShiftGroup(TyperGroup):
    """The root command group: a SkyShiftError from any command prints `Error: message` and exits 1.

    Users see the server's message, never a traceback, for every error the core raises on purpose.
    It also accepts kubectl's `-o=name` form of short options, which click would read as `=name`.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        for command in self.commands.values():
            name_metavars(command)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, split_short_option_values(self, args))

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UnauthorizedError as error:
            typer.echo(f"Error: {error.message}{unauthorized_hint(ctx)}", err=True)
            raise typer.Exit(1) from None
        except ServerUnreachableError as error:
            typer.echo(f"Error: {error.message}{server_source_note(ctx, error)}", err=True)
            raise typer.Exit(1) from None
        except SkyShiftError as error:
            typer.echo(f"Error: {error.message}", err=True)
            raise typer.Exit(1) from None


def split_short_option_values(command: click.Command, args: list[str]) -> list[str]:
    """Rewrite `-o=name` as `-o name` wherever `-o` is a short option that takes a value.

    Each argument is checked against the options of the command it belongs to: the root's first,
    then those of the subcommand named by the first positional argument, and so on down. Arguments
    after `--` are left alone, so `exec JOB -- cmd -x=1` reaches the command unchanged.
    """
    # Typer builds its commands with its own copy of click (typer._click), so click's classes
    # cannot be checked with isinstance: the parameters and groups are recognised by their attributes.
    value_options: set[str] = set()
    for param in command.params:
        if getattr(param, "param_type_name", None) == "option" and not param.is_flag and not param.count:
            value_options.update(param.opts)
    subcommands = getattr(command, "commands", {})

    rewritten: list[str] = []
    position = 0
    while position < len(args):
        arg = args[position]
        position += 1
        if arg == "--":
            return rewritten + args[position - 1 :]
        joined = _SHORT_OPTION_WITH_EQUALS.match(arg)
        if joined and joined.group(1) in value_options:
            rewritten.extend(joined.groups())
            continue
        rewritten.append(arg)
        if arg in value_options and position < len(args):
            # The next argument is this option's value, even when it looks like an option.
            rewritten.append(args[position])
            position += 1
        elif not arg.startswith("-") and arg in subcommands:
            return rewritten + split_short_option_values(subcommands[arg], args[position:])
    return rewritten


@dataclass
class CliState:
    """Options given before the command name, kept in the root click context."""

    server: str | None = None
    token: str | None = None
    ca_file: str | None = None
    # The connection of the command's last client (from `client_for`), for the hints in error messages.
    connection: Connection | None = None


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
def _namespace_or_context(value: str | None) -> str | None:
    """Return --namespace, else the current context's namespace (None when neither is set)."""
    if value:
        return value
    try:
        context = ClientConfig.load().current()
    except (InvalidError, OSError):
        return None  # The command that reads the config reports what is wrong with it.
    return ContextNamespace(context.namespace) if context is not None and context.namespace else None


NamespaceOption = Annotated[
    str | None,
    typer.Option(
        "--namespace",
        "-n",
        help="Namespace of namespaced kinds. Default: the current context's namespace "
        "(skyshift config set-context --current --namespace NS), else default.",
        callback=_namespace_or_context,
    ),
]


def _state(ctx: click.Context) -> CliState:
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


def server_for(ctx: click.Context, server: str | None) -> str:
    """Return the command's --server, else the global --server, else `resolve_server`'s choice."""
    return resolve_server(server if server is not None else _state(ctx).server)


def connection_for(ctx: click.Context, server: str | None, ca_file: str | None = None) -> Connection:
    """Return the server and credentials for a command, from its options, the global ones and the config."""
    state = _state(ctx)
    return resolve_connection(
        server if server is not None else state.server, state.token, ca_file if ca_file is not None else state.ca_file
    )


def client_for(ctx: click.Context, server: str | None, timeout: float | None = None) -> SkyShiftClient:
    """Return a client for the command's server that sends the command's token, if it has one."""
    connection = connection_for(ctx, server)
    _state(ctx).connection = connection
    client = open_client(connection, connection.token, timeout)
    client.on_warning = print_warning
    return client


def open_client(connection: Connection, token: str | None, timeout: float | None = None) -> SkyShiftClient:
    """Return a client for `connection` that sends `token`.

    When the CA file cannot be loaded, the error names where its path came from, such as a context
    of the client config.
    """
    options = {"timeout": timeout} if timeout is not None else {}
    try:
        return SkyShiftClient(connection.server, token=token, ca_file=connection.ca_file, **options)
    except InvalidError as error:
        if "ca_file" not in error.details or connection.ca_source is None:
            raise
        path, reason = error.details["ca_file"], error.details.get("reason")
        if connection.ca_from_context:
            message = (
                f"cannot load the CA file {path!r}, the certificate_authority of {connection.ca_source}: {reason}; "
                "correct the path there, or pass --certificate-authority FILE"
            )
        else:
            message = (
                f"cannot load the CA file {path!r} (from {connection.ca_source}): {reason}; "
                "pass a PEM file with the CA that signed the API server's certificate"
            )
        raise InvalidError(message, details=error.details) from error


DocumentOutputOption = Annotated[
    str | None, typer.Option("--output", "-o", help="Output format: yaml or json. Default: text.")
]


def check_document_output(output: str | None) -> None:
    """Raise InvalidError unless `output` is None (text), yaml or json."""
    if output not in (None, "yaml", "json"):
        raise InvalidError(f"invalid output format {output!r}: expected yaml or json")


def print_document(data: Any, output: str | None) -> bool:
    """Print `data` as YAML or JSON when `output` requests it; return False for the text format."""
    check_document_output(output)
    if output is None:
        return False
    typer.echo(to_yaml(data).rstrip("\n") if output == "yaml" else json.dumps(data, indent=2))
    return True


def print_warning(text: str) -> None:
    """Print a warning that the server sent with a response to stderr, as kubectl prints them."""
    typer.echo(f"Warning: {text}", err=True)


def server_source_note(ctx: click.Context, error: ServerUnreachableError | None = None) -> str:
    """Return where the server URL of the command's client came from, such as ` (server URL from --server)`.

    For a server certificate that failed verification, the note also names where the CA file came from.
    """
    connection = _state(ctx).connection
    if connection is None:
        return ""
    sources = [f"server URL from {connection.server_source}"]
    verify_failed = error is not None and error.details.get("cause") == "certificate-verify-failed"
    if verify_failed and connection.ca_source is not None:
        sources.append(f"CA file from {connection.ca_source}")
    return f" ({'; '.join(sources)})"


def unauthorized_hint(ctx: click.Context) -> str:
    """Explain a 401: which client config the token came from, or why no token was sent at all.

    Commands that send no token on purpose (login, register) do not use `client_for` and get no hint.
    """
    connection = _state(ctx).connection
    if connection is None:
        return ""
    path = default_config_path()
    if connection.token is not None:
        if connection.token_source == "--token":
            return " (the token was given with --token)"
        if connection.token_source is not None and connection.token_source.startswith("$"):
            return f" (the token came from {connection.token_source}; unset it or pass --token to use another)"
        return f" (client configuration: {path}; set SKYSHIFT_CONFIG or --token to use another)"

    url = connection.server
    login = f"skyshift login --server {url} --username NAME"
    if not path.exists():
        return f"; no token was sent because there is no client config at {path}; log in with: {login}"
    config = ClientConfig.load(path)
    with_tokens = [context for context in config.contexts if context.token]
    for context in with_tokens:
        if same_server(context.server, url):
            return (
                f"; no token was sent because context {context.name!r} in {path}, which has a token for {url}, "
                f"is not the current context; switch to it with: skyshift config use-context {context.name}"
            )
    servers = ", ".join(sorted({context.server for context in with_tokens})) or "none"
    return (
        f"; no token was sent because no saved login in {path} matches {url} "
        f"(it has tokens for: {servers}, and a token goes only to the server it was issued for); log in with: "
        f"{login}, or pass --token"
    )


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
