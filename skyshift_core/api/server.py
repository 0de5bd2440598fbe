"""Run the API server under uvicorn, in the foreground or in a thread (tests, benchmarks)."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time

import uvicorn

from skyshift_core.api.app import ApiSettings, create_app
from skyshift_core.auth.service import AuthSettings

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
    options = dict(host=host, port=port, log_level=log_level, access_log=False, timeout_graceful_shutdown=5)
    options.update(_server_options(settings))
    if workers <= 1:
        uvicorn.run(create_app(settings), **options)
        return
    os.environ[_SETTINGS_VARIABLE] = json.dumps(dataclasses.asdict(settings))
    uvicorn.run("skyshift_core.api.server:app_from_environment", factory=True, workers=workers, **options)


def app_from_environment():
    """Build the app in a uvicorn worker process from the settings that `serve` put in the environment."""
    from skyshift_core.plugins import apply_kind_hooks

    # A worker is a new interpreter: it registers plugin kinds itself, as `skyshift api-server` does.
    apply_kind_hooks()
    data = json.loads(os.environ[_SETTINGS_VARIABLE])
    data["auth"] = AuthSettings(**data.get("auth", {}))
    return create_app(ApiSettings(**data))


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
        self.server = uvicorn.Server(config)
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
