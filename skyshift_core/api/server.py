"""Run the API server under uvicorn, in the foreground or in a thread (tests, benchmarks)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import ssl
import sys
import threading
import time
from pathlib import Path

import uvicorn
from uvicorn.main import STARTUP_FAILURE

from skyshift_core.api.app import ApiSettings, create_app
from skyshift_core.auth.service import AuthSettings
from skyshift_core.errors import InvalidError, UnavailableError
from skyshift_core.store.etcd import Store

logger = logging.getLogger(__name__)

DEFAULT_PORT = 50051


_SETTINGS_VARIABLE = "SKYSHIFT_API_SETTINGS"


def serve(
    settings: ApiSettings,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    log_level: str = "info",
    workers: int = 1,
) -> None:
    """Serve until interrupted (SIGINT or SIGTERM).

    With workers > 1, uvicorn forks that many processes sharing the port; each builds its app from
    the settings passed through the environment, which works because the API server is stateless.
    With `settings.tls_cert_file` and `tls_key_file` it serves HTTPS only.
    """
    check_startup(settings)
    options = dict(host=host, port=port, log_level=log_level, access_log=False, timeout_graceful_shutdown=5)
    options.update(_server_options(settings))
    if workers <= 1:
        server = DrainingServer(uvicorn.Config(create_app(settings), **options))
        with contextlib.suppress(KeyboardInterrupt):
            server.run()
        if not server.started:
            # As uvicorn.run exits when the server could not start, for example on a port in use.
            sys.exit(STARTUP_FAILURE)
        return
    # NOTE: workers forked by uvicorn's supervisor run its own Server class, so their open watch
    # streams are cut, not ended, after the graceful shutdown timeout.
    os.environ[_SETTINGS_VARIABLE] = json.dumps(dataclasses.asdict(settings))
    uvicorn.run("skyshift_core.api.server:app_from_environment", factory=True, workers=workers, **options)


# Words in gRPC's reason for a failed connection that mean the TLS handshake with etcd failed.
# Such a failure does not pass with time, unlike etcd being down.
_TLS_FAILURE_MARKERS = ("handshake", "ssl", "tsi_", "certificate", "socket closed")
# Seconds the start-up check waits for etcd before the server starts without it.
STARTUP_ETCD_WAIT = 2.0


def check_startup(settings: ApiSettings) -> None:
    """Check the TLS files and the connection to etcd before the server starts.

    A mistake then ends `skyshift api-server` with one message that names the option to fix,
    instead of a traceback from inside uvicorn or a server that never reaches etcd. etcd that is
    only down is not an error: the server starts, and /readyz reports it until etcd responds.
    """
    if settings.tls_cert_file and settings.tls_key_file:
        _check_key_pair(settings.tls_cert_file, settings.tls_key_file)
    try:
        tls = settings.etcd_tls()
    except ValueError as error:
        raise InvalidError(f"{error}: pass --etcd-cafile with --etcd-certfile and --etcd-keyfile") from error
    if tls is not None:
        tls.credentials()  # Reads the files: InvalidError names one that cannot be read.
    asyncio.run(_probe_etcd(settings, tls))


def _check_key_pair(cert_file: str, key_file: str) -> None:
    for path, option in ((cert_file, "--tls-cert"), (key_file, "--tls-key")):
        if not Path(path).is_file():
            raise InvalidError(f"cannot read the {option} file {path!r}: no such file")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, OSError) as error:
        raise InvalidError(
            f"cannot serve HTTPS with --tls-cert {cert_file!r} and --tls-key {key_file!r}: {error}; "
            "both must be PEM files, and the key must belong to the certificate"
        ) from error


async def _probe_etcd(settings: ApiSettings, tls) -> None:
    store = Store(
        settings.etcd_endpoints,
        root=settings.etcd_root,
        deadline=STARTUP_ETCD_WAIT,
        username=settings.etcd_username,
        password=settings.etcd_password,
        tls=tls,
    )
    endpoints = ", ".join(settings.etcd_endpoints)
    try:
        await store.ping()
    except UnavailableError as error:
        reason = str(error).lower()
        if tls is not None and any(marker in reason for marker in _TLS_FAILURE_MARKERS):
            raise InvalidError(
                f"the TLS connection to etcd at {endpoints} failed: {error.message}. Check --etcd-cafile "
                "(the CA that signed etcd's certificate) and --etcd-certfile with --etcd-keyfile (a client "
                "certificate signed by the CA in etcd's --trusted-ca-file)"
            ) from error
        logger.warning("etcd at %s does not respond yet; /readyz reports not ready until it does: %s", endpoints, error)
    finally:
        await store.close()


def app_from_environment():
    """Build the app in a uvicorn worker process from the settings that `serve` put in the environment."""
    from skyshift_core.plugins import apply_kind_hooks

    # A worker is a new interpreter: it registers plugin kinds itself, as `skyshift api-server` does.
    apply_kind_hooks()
    data = json.loads(os.environ[_SETTINGS_VARIABLE])
    data["auth"] = AuthSettings(**data.get("auth", {}))
    return create_app(ApiSettings(**data))


class DrainingServer(uvicorn.Server):
    """A uvicorn server that ends the app's open watch streams as soon as it starts shutting down.

    uvicorn then waits for the connections to finish, and watch streams never finish by themselves."""

    async def shutdown(self, sockets=None) -> None:
        drain = getattr(getattr(self.config.app, "state", None), "watch_drain", None)
        if drain is not None:
            drain.drain()
        await super().shutdown(sockets=sockets)


def _server_options(settings: ApiSettings) -> dict:
    """uvicorn options that every API server gets: TLS files, and client addresses taken from the
    connection only. uvicorn would otherwise trust X-Forwarded-For from 127.0.0.1, which would let a
    local client choose the address that login rate limits and the audit log see."""
    options: dict = {"proxy_headers": False}
    if settings.tls_cert_file or settings.tls_key_file:
        if not (settings.tls_cert_file and settings.tls_key_file):
            raise ValueError("HTTPS needs both --tls-cert and --tls-key")
        options.update(ssl_certfile=settings.tls_cert_file, ssl_keyfile=settings.tls_key_file)
    return options


class ServerThread:
    """An API server on a background thread of this process, for tests and benchmarks."""

    def __init__(self, settings: ApiSettings, port: int, host: str = "127.0.0.1"):
        # loop="asyncio": with uvloop installed, uvicorn would otherwise set uvloop's event loop
        # policy for the whole process, and asyncio subprocesses in the caller's loop then fail.
        config = uvicorn.Config(
            create_app(settings), host=host, port=port, log_level="warning", access_log=False,
            timeout_graceful_shutdown=1, loop="asyncio", **_server_options(settings),
        )  # fmt: skip
        self.server = DrainingServer(config)
        scheme = "https" if settings.tls_cert_file else "http"
        self.url = f"{scheme}://{host}:{port}"
        self._thread = threading.Thread(target=self.server.run, name=f"api-server-{port}", daemon=True)

    def start(self, timeout: float = 15.0) -> "ServerThread":
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"API server on {self.url} did not start within {timeout:g} s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)
