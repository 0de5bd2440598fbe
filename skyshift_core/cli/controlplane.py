"""Control plane commands: `up`, `down` and `status` for a local control plane, and the foreground
servers `api-server` and `controller-manager` that `up` starts (and that multi-host setups run directly)."""

import logging
from pathlib import Path
from typing import Annotated

import typer

from skyshift_core.auth.settings import AuthSettings
from skyshift_core.cli.common import (
    CaFileOption,
    DocumentOutputOption,
    ServerOption,
    check_document_output,
    client_for,
    connection_for,
    print_document,
)
from skyshift_core.cli.config import DEFAULT_STATE_DIR, LOCAL_CONTEXT, ClientConfig, default_config_path
from skyshift_core.cli.tables import age, format_table
from skyshift_core.errors import InvalidError, NotFoundError
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

# The controller manager's default lease (LEASE_NAME in skyshift_core.controllers.manager, which the
# CLI does not import because it loads the whole runtime).
CONTROLLER_MANAGER_LEASE = "controller-manager"

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Width of the component name column in the progress lines of `up`.
NAME_WIDTH = max(len(component) for component in COMPONENTS) + 2

STATE_DIR_ENV = "SKYSHIFT_STATE_DIR"
StateDirOption = Annotated[
    Path,
    typer.Option(
        "--state-dir",
        envvar=STATE_DIR_ENV,
        help="Directory for the control plane's pids, logs, etcd data, credentials and client config.",
    ),
]
EtcdPrefixOption = Annotated[str, typer.Option("--etcd-prefix", help="Key prefix of every object in etcd.")]
EtcdCaOption = Annotated[
    Path | None, typer.Option("--etcd-cafile", help="PEM CA bundle that verifies etcd's certificate; turns on TLS.")
]
EtcdCertOption = Annotated[
    Path | None, typer.Option("--etcd-certfile", help="PEM client certificate for etcd's --client-cert-auth.")
]
EtcdKeyOption = Annotated[Path | None, typer.Option("--etcd-keyfile", help="PEM key of --etcd-certfile.")]
EtcdServerNameOption = Annotated[
    str | None,
    typer.Option(
        "--etcd-server-name", help="Name to check etcd's certificate against, when endpoints are IP addresses."
    ),
]
EtcdUserOption = Annotated[str | None, typer.Option("--etcd-username", help="etcd user (etcd's own authentication).")]
EtcdPasswordFileOption = Annotated[
    Path | None, typer.Option("--etcd-password-file", help="File whose first line is the etcd user's password.")
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
        typer.Option(
            "--port",
            help=f"API server port. Default: the port recorded in STATE_DIR by the last up, else {DEFAULT_PORT}.",
        ),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            help=f"API server address. Default: the address recorded in STATE_DIR by the last up, else {DEFAULT_HOST}.",
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds each component may take to become ready.")
    ] = READY_TIMEOUT,
    controller_manager_config: Annotated[
        str | None,
        typer.Option(
            "--controller-manager-config",
            metavar="FILE",
            help="YAML file the controller manager runs with (its --config: scheduler profiles, skylet and "
            "leader election settings), checked before anything starts. Default: the file recorded in "
            "STATE_DIR by the last up, else none. Pass '' for none.",
        ),
    ] = None,
) -> None:
    """Start a local control plane in the background: etcd, the API server and the controller manager.

    Running it again starts only what is not running and never restarts what runs. Logs go to STATE_DIR/logs.
    """
    plane = LocalControlPlane(state_dir, ready_timeout=timeout)
    # Checked before the client config is read from it, so that its problem is named as such.
    plane.prepare_state_dir()
    config = ClientConfig.load(plane.config_path)
    previous = next((context for context in config.contexts if context.name == LOCAL_CONTEXT), None)
    state = plane.up(
        etcd=_parse_endpoints(etcd) if etcd is not None else None,
        host=host,
        port=port,
        progress=_EchoProgress(),
        admin_token=previous.token if previous is not None else None,
        controller_manager_config=controller_manager_config,
        on_wait=lambda: _waiting_for_other_run(plane),
    )

    credentials = plane.bootstrap_result
    config.set_context(LOCAL_CONTEXT, state.server_url, user=credentials.admin_user, token=credentials.admin_token)
    config.save()
    typer.echo(f"SkyShift is running; API server at {state.server_url}")
    if state.controller_manager_config is not None:
        typer.echo(f"The controller manager runs with the config {state.controller_manager_config}")
    if credentials.admin_password is not None:
        typer.echo(f"Created user {credentials.admin_user}; its password is in {plane.admin_password_path} (mode 0600)")
    typer.echo(
        f"The client config {plane.config_path} holds a token of {credentials.admin_user} for one day; "
        f"then log in again: skyshift login --username {credentials.admin_user}"
    )
    if plane.config_path.absolute() != default_config_path().absolute():
        typer.echo(f"To use it, run: export SKYSHIFT_CONFIG={plane.config_path}")


def down(state_dir: StateDirOption = DEFAULT_STATE_DIR) -> None:
    """Stop the processes that skyshift up started; etcd's data stays in STATE_DIR/etcd."""
    plane = LocalControlPlane(state_dir)
    outcomes = plane.down(
        lambda component, outcome: typer.echo(f"{component:<{NAME_WIDTH}}{outcome}"),
        on_wait=lambda: _waiting_for_other_run(plane),
    )
    if not outcomes:
        typer.echo(f"Nothing to stop: no control plane is recorded in {plane.state_dir}")


def status(state_dir: StateDirOption = DEFAULT_STATE_DIR) -> None:
    """Show each component of the local control plane. Exits 1 unless every component runs."""
    plane = LocalControlPlane(state_dir)
    rows = plane.status()
    typer.echo(
        format_table(
            ["COMPONENT", "PID", "STATUS", "ENDPOINT", "LOG", "CONFIG"],
            [[row.component, str(row.pid or "-"), row.status, row.endpoint, row.log, row.config] for row in rows],
        )
    )
    if any(row.status in ("stopped", "not ready") for row in rows):
        raise typer.Exit(1)


def leader(
    ctx: typer.Context,
    lease: Annotated[
        str, typer.Argument(help="The lease that controller managers elect their leader with.")
    ] = CONTROLLER_MANAGER_LEASE,
    output: DocumentOutputOption = None,
    server: ServerOption = None,
) -> None:
    """Show which controller manager leads: the holder of its lease, and when the lease expires.

    Exits 1 when the lease has no holder."""
    check_document_output(output)
    with client_for(ctx, server) as client:
        try:
            record = client.call("GET", f"/api/v1/leases/{lease}")
        except NotFoundError:
            typer.echo(
                f"No leader: lease '{lease}' has no holder. Start a controller manager (skyshift up, or skyshift "
                "controller-manager), or check its log for why it cannot acquire the lease",
                err=True,
            )
            raise typer.Exit(1) from None
    if print_document(record, output):
        return
    remaining = record.get("remaining_seconds")
    row = [
        record["name"], record["holder"], age(record["acquired_at"]), f"{record['ttl_seconds']}s",
        "-" if remaining is None else f"{remaining}s",
    ]  # fmt: skip
    typer.echo(format_table(["LEASE", "HOLDER", "HELD FOR", "TTL", "EXPIRES IN"], [row]))


def _configure_logging(level: str) -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise InvalidError(f"invalid --log-level {level!r}: expected debug, info, warning or error")
    logging.basicConfig(level=numeric, format=LOG_FORMAT, force=True)
    # httpx logs every request at INFO, which would repeat each health check in the log.
    logging.getLogger("httpx").setLevel(max(numeric, logging.WARNING))


def _read_secret_file(path: Path | None, what: str) -> str | None:
    """Return the first line of a credentials file, or None without a path."""
    if path is None:
        return None
    try:
        lines = path.read_text().strip().splitlines()
    except OSError as error:
        raise InvalidError(f"cannot read the {what} file {path}: {error}") from error
    if not lines:
        raise InvalidError(f"the {what} file {path} is empty")
    return lines[0].strip()


def _etcd_settings(
    etcd: str,
    etcd_prefix: str,
    cafile: Path | None,
    certfile: Path | None,
    keyfile: Path | None,
    server_name: str | None,
    username: str | None,
    password_file: Path | None,
) -> dict:
    """ApiSettings fields for reaching etcd, checked."""
    password = _read_secret_file(password_file, "etcd password")
    if (username is None) != (password is None):
        raise InvalidError("etcd authentication needs both --etcd-username and --etcd-password-file")
    if (certfile or keyfile) and cafile is None:
        raise InvalidError("--etcd-certfile and --etcd-keyfile need --etcd-cafile too")
    return {
        "etcd_endpoints": _parse_endpoints(etcd),
        "etcd_root": etcd_prefix,
        "etcd_ca_file": str(cafile) if cafile else None,
        "etcd_cert_file": str(certfile) if certfile else None,
        "etcd_key_file": str(keyfile) if keyfile else None,
        "etcd_server_name": server_name,
        "etcd_username": username,
        "etcd_password": password,
    }


def api_server(
    etcd: Annotated[str, typer.Option("--etcd", help="etcd endpoints, HOST:PORT[,HOST:PORT...].")],
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = DEFAULT_PORT,
    etcd_prefix: EtcdPrefixOption = DEFAULT_ETCD_PREFIX,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="PEM certificate (chain) to serve HTTPS with; needs --tls-key.")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="PEM private key of --tls-cert.")] = None,
    etcd_cafile: EtcdCaOption = None,
    etcd_certfile: EtcdCertOption = None,
    etcd_keyfile: EtcdKeyOption = None,
    etcd_server_name: EtcdServerNameOption = None,
    etcd_username: EtcdUserOption = None,
    etcd_password_file: EtcdPasswordFileOption = None,
    audit_log: Annotated[
        Path | None,
        typer.Option("--audit-log", help="JSON-lines file for the audit log. Default: the server's log, at INFO."),
    ] = None,
    token_lifetime: Annotated[
        int, typer.Option("--token-lifetime", help="Seconds a login token stays valid unless the login asks for less.")
    ] = AuthSettings.token_lifetime_seconds,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")] = "info",
) -> None:
    """Run the API server in the foreground until SIGTERM or SIGINT."""
    from skyshift_core.api.app import ApiSettings
    from skyshift_core.api.server import serve
    from skyshift_core.plugins import apply_kind_hooks

    _configure_logging(log_level)
    if (tls_cert is None) != (tls_key is None):
        raise InvalidError("HTTPS needs both --tls-cert and --tls-key")
    # Kinds from plugins must be registered before the app builds a route for each kind.
    apply_kind_hooks()
    auth = AuthSettings(
        audit_log=str(audit_log) if audit_log else None,
        token_lifetime_seconds=token_lifetime,
        max_token_lifetime_seconds=max(token_lifetime, AuthSettings.max_token_lifetime_seconds),
    )
    settings = ApiSettings(
        **_etcd_settings(
            etcd, etcd_prefix, etcd_cafile, etcd_certfile, etcd_keyfile, etcd_server_name, etcd_username,
            etcd_password_file,
        ),
        tls_cert_file=str(tls_cert) if tls_cert else None,
        tls_key_file=str(tls_key) if tls_key else None,
        auth=auth,
    )  # fmt: skip
    scheme = "https" if tls_cert else "http"
    logger.info("Starting the API server on %s://%s:%d with etcd at %s", scheme, host, port, etcd)
    serve(settings, host=host, port=port, log_level=log_level.lower())


def bootstrap_command(
    etcd: Annotated[str, typer.Option("--etcd", help="etcd endpoints, HOST:PORT[,HOST:PORT...].")],
    output_dir: Annotated[
        Path,
        typer.Option("--output-dir", help="Directory for admin.password, controller-manager.token and config.yaml."),
    ],
    server: Annotated[str, typer.Option("--server", help="URL of the API server, written into config.yaml.")],
    certificate_authority: Annotated[
        Path | None,
        typer.Option("--certificate-authority", help="CA of the API server's certificate, for config.yaml."),
    ] = None,
    admin_user: Annotated[str, typer.Option("--admin-user", help="Name of the first administrator.")] = "admin",
    etcd_prefix: EtcdPrefixOption = DEFAULT_ETCD_PREFIX,
    etcd_cafile: EtcdCaOption = None,
    etcd_certfile: EtcdCertOption = None,
    etcd_keyfile: EtcdKeyOption = None,
    etcd_server_name: EtcdServerNameOption = None,
    etcd_username: EtcdUserOption = None,
    etcd_password_file: EtcdPasswordFileOption = None,
) -> None:
    """Create the built-in Roles, the first administrator and the controller manager's identity in
    etcd (unless they exist), and write their credentials with mode 0600 into OUTPUT_DIR."""
    from skyshift_core.api.app import ApiSettings
    from skyshift_core.auth.bootstrap import bootstrap, run_sync, write_private_file
    from skyshift_core.store import Store

    settings = ApiSettings(
        **_etcd_settings(
            etcd, etcd_prefix, etcd_cafile, etcd_certfile, etcd_keyfile, etcd_server_name, etcd_username,
            etcd_password_file,
        )
    )  # fmt: skip
    output_dir = output_dir.expanduser().absolute()
    config = ClientConfig.load(output_dir / "config.yaml")
    existing = next((context for context in config.contexts if context.name == "admin"), None)
    try:
        cm_token = (output_dir / "controller-manager.token").read_text().strip() or None
    except FileNotFoundError:
        cm_token = None

    async def run():
        store = Store(
            settings.etcd_endpoints, root=settings.etcd_root, username=settings.etcd_username,
            password=settings.etcd_password, tls=settings.etcd_tls(),
        )  # fmt: skip
        try:
            return await bootstrap(
                store, admin_user=admin_user, admin_token=existing.token if existing else None,
                controller_manager_token=cm_token,
            )  # fmt: skip
        finally:
            await store.close()

    result = run_sync(run)
    if result.admin_password is not None:
        write_private_file(output_dir / "admin.password", result.admin_password + "\n")
        typer.echo(f"Created user {admin_user}; its password is in {output_dir / 'admin.password'}")
    else:
        typer.echo(f"User {admin_user} already exists; its password was not changed")
    write_private_file(output_dir / "controller-manager.token", result.controller_manager_token + "\n")
    ca = str(certificate_authority.expanduser().absolute()) if certificate_authority else None
    config.set_context("admin", server, user=admin_user, token=result.admin_token, certificate_authority=ca)
    config.save()
    if result.created_roles:
        typer.echo(f"Created the built-in Roles {', '.join(result.created_roles)}")
    token_file = output_dir / "controller-manager.token"
    typer.echo(f"Wrote {token_file} and {config.path}")
    command = f"skyshift controller-manager --server {server} --token-file {token_file}"
    if ca is not None:
        command += f" --certificate-authority {ca}"
    typer.echo(f"Start controller managers with: {command}")


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
        float,
        typer.Option(
            "--health-interval",
            min=0.1,
            help="Seconds between API server health checks; the ready file is removed while a check fails.",
        ),
    ] = 10.0,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="YAML file with scheduler, skylet and leader election settings."),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=1,
            max=65535,
            help="Serve Prometheus metrics at http://HOST:PORT/metrics, HOST from --metrics-host (off by default).",
        ),
    ] = None,
    metrics_host: Annotated[
        str,
        typer.Option(
            "--metrics-host",
            help="Address the metrics listener binds, such as 0.0.0.0 for a Prometheus on another machine.",
        ),
    ] = "127.0.0.1",
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            help="File whose first line is this process's service token. "
            "Default: --token, $SKYSHIFT_TOKEN, then the client config.",
        ),
    ] = None,
    ca_file: CaFileOption = None,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")] = "info",
) -> None:
    """Run the controller manager in the foreground until SIGTERM or SIGINT."""
    from skyshift_core.controllers.manager import run_controller_manager

    _configure_logging(log_level)
    connection = connection_for(ctx, server)
    token = _read_secret_file(token_file, "token")
    token_source = f"--token-file {token_file}" if token is not None else connection.token_source
    token = token or connection.token
    if token is None:
        logger.warning("No token given (--token-file): every request to the API server will be rejected with 401")
    run_controller_manager(
        connection.server,
        ready_file=ready_file,
        health_interval=health_interval,
        config_path=config,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        token=token,
        ca_file=ca_file or connection.ca_file,
        token_source=token_source,
    )


def register(app: typer.Typer) -> None:
    app.command("up")(up)
    app.command("down")(down)
    app.command("status")(status)
    app.command("leader")(leader)
    app.command("api-server")(api_server)
    app.command("controller-manager")(controller_manager)
    app.command("bootstrap")(bootstrap_command)


def _waiting_for_other_run(plane: LocalControlPlane) -> None:
    typer.echo(f"Waiting for another skyshift up or down on {plane.state_dir} to finish...", err=True)
