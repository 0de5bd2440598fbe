"""Control plane commands: `up`, `down` and `status` for a local control plane, and the foreground
servers `api-server` and `controller-manager` that `up` starts (and that multi-host setups run directly)."""

import logging
from pathlib import Path
from typing import Annotated

import typer

from skyshift_core.cli.common import server_for
from skyshift_core.cli.config import DEFAULT_STATE_DIR, LOCAL_CONTEXT, ClientConfig, default_config_path
from skyshift_core.cli.tables import format_table
from skyshift_core.errors import InvalidError
from skyshift_core.local.controlplane import (
    COMPONENTS,
    DEFAULT_ETCD_PREFIX,
    DEFAULT_HOST,
    DEFAULT_PORT,
    READY_TIMEOUT,
    LocalControlPlane,
    Progress,
)

logger = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Width of the component name column in the progress lines of `up`.
NAME_WIDTH = max(len(component) for component in COMPONENTS) + 2

StateDirOption = Annotated[
    Path,
    typer.Option("--state-dir", help="Directory for the control plane's pids, logs, etcd data and client config."),
]


class _EchoProgress(Progress):
    """Prints one line per component: `etcd   starting... ready (pid 12, 127.0.0.1:2379)`."""

    def __init__(self) -> None:
        self.open_line = False

    def starting(self, component: str) -> None:
        typer.echo(f"{component:<{NAME_WIDTH}}starting... ", nl=False)
        self.open_line = True

    def finished(self, component: str, outcome: str) -> None:
        prefix = "" if self.open_line else f"{component:<{NAME_WIDTH}}"
        typer.echo(prefix + outcome)
        self.open_line = False

    def failed(self, component: str) -> None:
        if self.open_line:
            typer.echo("failed")
            self.open_line = False


def _parse_endpoints(text: str) -> list[str]:
    endpoints = [part.strip() for part in text.split(",") if part.strip()]
    for endpoint in endpoints:
        host, _, port = endpoint.removeprefix("http://").rpartition(":")
        if not host or not port.isdigit():
            raise InvalidError(f"invalid etcd endpoint {endpoint!r}: expected HOST:PORT, for example 127.0.0.1:2379")
    if not endpoints:
        raise InvalidError("--etcd is empty: pass HOST:PORT[,HOST:PORT...]")
    return endpoints


def up(
    state_dir: StateDirOption = DEFAULT_STATE_DIR,
    etcd: Annotated[
        str | None,
        typer.Option("--etcd", help="Use this etcd (HOST:PORT[,HOST:PORT...]) instead of starting a local one."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", help=f"API server port. Default: {DEFAULT_PORT}, or the running server's."),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option("--host", help=f"API server address. Default: {DEFAULT_HOST}, or the running server's."),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds each component may take to become ready.")
    ] = READY_TIMEOUT,
) -> None:
    """Start a local control plane in the background: etcd, the API server and the controller manager.

    Running it again starts only what is not running. Logs go to STATE_DIR/logs.
    """
    plane = LocalControlPlane(state_dir, ready_timeout=timeout)
    state = plane.up(
        etcd=_parse_endpoints(etcd) if etcd is not None else None, host=host, port=port, progress=_EchoProgress()
    )

    config = ClientConfig.load(plane.config_path)
    config.set_context(LOCAL_CONTEXT, state.server_url)
    config.save()
    typer.echo(f"SkyShift is running; API server at {state.server_url}")
    if plane.config_path.absolute() != default_config_path().absolute():
        typer.echo(f"To use it, run: export SKYSHIFT_CONFIG={plane.config_path}")


def down(state_dir: StateDirOption = DEFAULT_STATE_DIR) -> None:
    """Stop the processes that skyshift up started; etcd's data stays in STATE_DIR/etcd."""
    plane = LocalControlPlane(state_dir)
    outcomes = plane.down(lambda component, outcome: typer.echo(f"{component:<{NAME_WIDTH}}{outcome}"))
    if not outcomes:
        typer.echo(f"Nothing to stop: no control plane is recorded in {plane.state_dir}")


def status(state_dir: StateDirOption = DEFAULT_STATE_DIR) -> None:
    """Show each component of the local control plane. Exits 1 unless every component runs."""
    plane = LocalControlPlane(state_dir)
    rows = plane.status()
    typer.echo(
        format_table(
            ["COMPONENT", "PID", "STATUS", "ENDPOINT", "LOG"],
            [[row.component, str(row.pid or "-"), row.status, row.endpoint, row.log] for row in rows],
        )
    )
    if any(row.status in ("stopped", "not ready") for row in rows):
        raise typer.Exit(1)


def _configure_logging(level: str) -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise InvalidError(f"invalid --log-level {level!r}: expected debug, info, warning or error")
    logging.basicConfig(level=numeric, format=LOG_FORMAT, force=True)
    # httpx logs every request at INFO, which would repeat each health check in the log.
    logging.getLogger("httpx").setLevel(max(numeric, logging.WARNING))


def api_server(
    etcd: Annotated[str, typer.Option("--etcd", help="etcd endpoints, HOST:PORT[,HOST:PORT...].")],
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = DEFAULT_PORT,
    etcd_prefix: Annotated[
        str, typer.Option("--etcd-prefix", help="Key prefix of every object in etcd.")
    ] = DEFAULT_ETCD_PREFIX,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")] = "info",
) -> None:
    """Run the API server in the foreground until SIGTERM or SIGINT."""
    from skyshift_core.api.app import ApiSettings
    from skyshift_core.api.server import serve
    from skyshift_core.plugins import apply_kind_hooks

    _configure_logging(log_level)
    # Kinds from plugins must be registered before the app builds a route for each kind.
    apply_kind_hooks()
    settings = ApiSettings(etcd_endpoints=_parse_endpoints(etcd), etcd_root=etcd_prefix)
    logger.info("Starting the API server on %s:%d with etcd at %s", host, port, etcd)
    serve(settings, host=host, port=port, log_level=log_level.lower())


def controller_manager(
    ctx: typer.Context,
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            "-s",
            help="API server URL. Default: $SKYSHIFT_SERVER, the client config, then http://127.0.0.1:50051.",
        ),
    ] = None,
    ready_file: Annotated[
        Path | None, typer.Option("--ready-file", help="File that contains this process's pid while it is ready.")
    ] = None,
    health_interval: Annotated[
        float, typer.Option("--health-interval", help="Seconds between API server health checks.")
    ] = 10.0,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="YAML file with scheduler, skylet and leader election settings."),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option("--metrics-port", help="Serve Prometheus metrics on 127.0.0.1 at this port (off by default)."),
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")] = "info",
) -> None:
    """Run the controller manager in the foreground until SIGTERM or SIGINT."""
    from skyshift_core.controllers.manager import run_controller_manager

    _configure_logging(log_level)
    run_controller_manager(
        server_for(ctx, server),
        ready_file=ready_file,
        health_interval=health_interval,
        config_path=config,
        metrics_port=metrics_port,
    )


def register(app: typer.Typer) -> None:
    app.command("up")(up)
    app.command("down")(down)
    app.command("status")(status)
    app.command("api-server")(api_server)
    app.command("controller-manager")(controller_manager)
