"""Run the API server under uvicorn, in the foreground or in a thread (tests, benchmarks)."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time

import uvicorn

from skyshift_core.api.app import ApiSettings, create_app

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
    """
    options = dict(host=host, port=port, log_level=log_level, access_log=False, timeout_graceful_shutdown=5)
    if workers <= 1:
        uvicorn.run(create_app(settings), **options)
        return
    os.environ[_SETTINGS_VARIABLE] = json.dumps(dataclasses.asdict(settings))
    uvicorn.run("skyshift_core.api.server:app_from_environment", factory=True, workers=workers, **options)


def app_from_environment():
    """App factory for uvicorn worker processes (see `serve`)."""
    return create_app(ApiSettings(**json.loads(os.environ[_SETTINGS_VARIABLE])))


class ServerThread:
    """An API server on a background thread of this process, for tests and benchmarks."""

    def __init__(self, settings: ApiSettings, port: int, host: str = "127.0.0.1"):
        config = uvicorn.Config(
            create_app(settings), host=host, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=1
        )
        self.server = uvicorn.Server(config)
        self.url = f"http://{host}:{port}"
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
