"""The root `skyshift` command: global options, every built-in command, and commands added by plugins.

`main()` is the console script; `python -m skyshift_core.cli.main` runs the same CLI, which is how
`skyshift up` starts its servers without relying on PATH.
"""

import logging
from typing import Annotated

import typer

from skyshift_core import __version__
from skyshift_core.cli import auth, controlplane, edit, exec, jobs, resources
from skyshift_core.cli.common import (
    CaFileOption,
    CliState,
    ServerOption,
    SkyShiftGroup,
    TokenOption,
    client_for,
    connection_for,
)
from skyshift_core.cli.plugins_cmd import app as plugins_app
from skyshift_core.client import DEFAULT_SERVER
from skyshift_core.errors import SkyShiftError

logger = logging.getLogger(__name__)

app = typer.Typer(
    name="skyshift",
    cls=SkyShiftGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120},
    help="Run jobs and services across many clusters as if they were one.",
    epilog=(
        "The API server is --server, else $SKYSHIFT_SERVER, else the current context of the client config, "
        f"else {DEFAULT_SERVER}. The client config is $SKYSHIFT_CONFIG, default ~/.skyshift/config.yaml; "
        "skyshift up and skyshift login write it. The token is --token, else $SKYSHIFT_TOKEN, else the "
        "token the client config holds for that server."
    ),
)


@app.callback()
def root(
    ctx: typer.Context,
    server: ServerOption = None,
    token: TokenOption = None,
    ca_file: CaFileOption = None,
) -> None:
    ctx.obj = CliState(server=server, token=token, ca_file=ca_file)


resources.register(app)
edit.register(app)
controlplane.register(app)
jobs.register(app)
exec.register(app)
auth.register_commands(app)
app.add_typer(plugins_app, name="plugins", help="Inspect the plugins installed in this Python environment.")


@app.command("version")
def version(
    ctx: typer.Context,
    client_only: Annotated[bool, typer.Option("--client", help="Print only the client's version.")] = False,
    server: ServerOption = None,
) -> None:
    """Print the client's version and, when the API server responds, the server's."""
    typer.echo(f"Client Version: {__version__}")
    if client_only:
        return
    url = connection_for(ctx, server).server
    try:
        with client_for(ctx, server, timeout=5.0) as client:
            typer.echo(f"Server Version: {client.server_version()} ({url})")
    except SkyShiftError as error:
        typer.echo(f"Server Version: unknown ({error.message})", err=True)


def register_plugin_extensions(target: typer.Typer) -> None:
    """Register the kinds and CLI commands of installed hook plugins; a broken plugin only warns."""
    from skyshift_core.plugins import apply_kind_hooks, hook_manager

    try:
        manager = hook_manager()
        apply_kind_hooks(manager)
        manager.hook.register_cli_commands(app=target)
    # Plugin code may raise anything; the built-in commands must keep working regardless.
    except Exception as error:  # noqa: BLE001
        typer.echo(
            f"Warning: plugins could not be loaded ({type(error).__name__}: {error}); "
            "built-in commands still work, and skyshift plugins list shows which plugin failed",
            err=True,
        )


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    register_plugin_extensions(app)
    app()


if __name__ == "__main__":
    main()
