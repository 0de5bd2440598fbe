"""A fake Kubernetes API server for tests: the REST and watch protocol over HTTP on 127.0.0.1.

It serves namespaces, nodes, pods, services, batch/v1 jobs and apps/v1 deployments and replica
sets to the official `kubernetes` Python client (tested with releases 35 and 37). Nothing runs
pods behind it unless a `SimulatedKubelet` is attached. Typical use in a test:

    with FakeApiServer(token="secret") as server:
        kubelet = SimulatedKubelet(server)
        kubelet.add_node("node-1", cpu="4", memory="16Gi")
        kubelet.start()
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
        ...  # kubernetes.config.new_client_from_config(str(kubeconfig))

`stop()` makes the server unreachable (connections are refused and open watches end) while the
stored objects survive, and `start()` serves them again on the same port.

NOTE: the server speaks plain HTTP only (no TLS, no client certificates), and it serves no
ConfigMaps, Secrets, Endpoints, Events or custom resources.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import uvicorn
import yaml

from .http_app import build_app
from .logs import LogStore
from .store import ObjectStore

if TYPE_CHECKING:
    from .kubelet import SimulatedKubelet

logger = logging.getLogger(__name__)

DEFAULT_VERSION_INFO = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.0-skyshift-fake",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-08-13T07:28:49Z",
    "goVersion": "go1.22.5",
    "compiler": "gc",
    "platform": "linux/amd64",
}


class FakeApiServer:
    """A fake kube-apiserver on 127.0.0.1, run by uvicorn in a background thread."""

    def __init__(
        self,
        port: int = 0,
        token: str | None = None,
        history_size: int = 1000,
        bookmark_interval_seconds: float = 5.0,
        default_watch_timeout_seconds: int = 1800,
        version_info: dict[str, str] | None = None,
    ) -> None:
        """Create a stopped server.

        port: TCP port on 127.0.0.1; 0 picks a free one at the first start and keeps it.
        token: if set, every request except /healthz, /livez, /readyz and /version must send
            `Authorization: Bearer <token>`, else it gets 401.
        history_size: number of writes kept for watch replay; a watch from an older resource
            version gets an ERROR event with a 410 `Status`.
        bookmark_interval_seconds: how often a watch with allowWatchBookmarks=true gets a BOOKMARK.
        default_watch_timeout_seconds: how long a watch without timeoutSeconds stays open.
        """
        self.host = "127.0.0.1"
        self._port = port
        self.token = token
        self.bookmark_interval_seconds = bookmark_interval_seconds
        self.default_watch_timeout_seconds = default_watch_timeout_seconds
        self.version_info = dict(version_info or DEFAULT_VERSION_INFO)
        self.store = ObjectStore(history_size=history_size)
        self.logs = LogStore()
        self.kubelet: SimulatedKubelet | None = None
        # Terminal sizes that exec sessions sent on the resize channel, as decoded JSON, in order.
        self.exec_resizes: list[dict[str, Any]] = []
        self._app = build_app(self)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._streams: set[Callable[[Any], None]] = set()
        self._streams_lock = threading.Lock()

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("The fake API server has no port yet: call start() first")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self, timeout_seconds: float = 10.0) -> Self:
        """Start serving (again) and return once the port accepts connections."""
        if self._server is not None:
            return self
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.host, self._port))
        except OSError as err:
            listener.close()
            raise RuntimeError(f"Cannot bind the fake API server to {self.host}:{self._port}: {err}") from err
        self._port = listener.getsockname()[1]

        # loop="asyncio": with uvloop installed, uvicorn would otherwise set uvloop's event loop
        # policy for the whole process, and asyncio subprocesses of the tests' loops then fail.
        config = uvicorn.Config(
            self._app,
            loop="asyncio",
            log_level="warning",
            access_log=False,
            ws="websockets-sansio",
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)

        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [listener]}, name=f"fake-apiserver-{self._port}", daemon=True
        )
        thread.start()

        deadline = time.monotonic() + timeout_seconds
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError(f"The fake API server on port {self._port} exited during startup; see the log above")
            if time.monotonic() > deadline:
                server.should_exit = True
                raise RuntimeError(f"The fake API server on port {self._port} did not start within {timeout_seconds} s")
            time.sleep(0.01)
        self._server, self._thread = server, thread
        logger.info("Fake API server listening on %s", self.url)
        return self

    def stop(self, timeout_seconds: float = 10.0) -> None:
        """Stop serving: close open watch and log streams, then the listening socket.

        The stored objects and the resource version counter are kept for the next start().
        """
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._server, self._thread = None, None
        self.store.close_all_watches()
        self.logs.close_all_followers()
        with self._streams_lock:
            streams = list(self._streams)
            self._streams.clear()
        for deliver in streams:
            deliver(None)
        server.should_exit = True
        thread.join(timeout_seconds)
        if thread.is_alive():
            raise RuntimeError(f"The fake API server on port {self._port} did not stop within {timeout_seconds} s")
        logger.info("Fake API server on port %d stopped", self._port)

    @property
    def open_stream_count(self) -> int:
        """Number of watch and log-follow responses that are streaming right now."""
        with self._streams_lock:
            return len(self._streams)

    def register_stream(self, deliver: Callable[[Any], None]) -> None:
        """Remember an open streaming response so that stop() can end it by delivering None."""
        with self._streams_lock:
            self._streams.add(deliver)

    def unregister_stream(self, deliver: Callable[[Any], None]) -> None:
        with self._streams_lock:
            self._streams.discard(deliver)

    def compact(self) -> int:
        """Drop the watch history; watches from any earlier resource version then get 410."""
        return self.store.compact()

    def write_kubeconfig(
        self,
        path: str | Path,
        context: str = "fake",
        cluster: str = "fake-cluster",
        user: str = "fake-user",
        namespace: str | None = None,
    ) -> Path:
        """Write a kubeconfig whose current context points at this server, with a token user."""
        context_entry: dict[str, Any] = {"cluster": cluster, "user": user}
        if namespace:
            context_entry["namespace"] = namespace
        user_entry: dict[str, Any] = {"token": self.token} if self.token else {}
        document = {
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "clusters": [{"name": cluster, "cluster": {"server": self.url}}],
            "users": [{"name": user, "user": user_entry}],
            "contexts": [{"name": context, "context": context_entry}],
            "current-context": context,
        }
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(document, sort_keys=False))
        return target

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        if self.kubelet is not None:
            self.kubelet.stop()
        self.stop()
