"""An informer: a cache of one kind of Kubernetes object, kept current by list and watch.

Each informer runs in a daemon thread. It lists the objects that match its selectors, then watches
from the list's resourceVersion. When the server ends a watch (`timeoutSeconds`) or cannot be
reached, it watches again from the last version it saw, and it lists again when that version has
expired (410 Gone, as an ERROR event or a response). After a failure it marks itself unhealthy and
retries with backoff.

The watch loop reads the stream itself rather than through `kubernetes.watch.Watch`, because its
`stop()` cannot interrupt a blocked read in client releases before 37; here `stop()` shuts the
connection down, so a stopped manager leaves no thread behind.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

from skyshift_k8s.api import CONNECT_TIMEOUT, KubernetesApi, KubernetesApiError, to_cluster_manager_error

logger = logging.getLogger(__name__)

# The API server ends each watch after this long; the informer then watches again from where it was.
WATCH_TIMEOUT_SECONDS = 300
# Seconds between attempts after a failure: doubling from the first to the second value.
INITIAL_BACKOFF_SECONDS = 0.2
MAX_BACKOFF_SECONDS = 5.0


class _Expired(Exception):
    """The watch's resourceVersion is too old: list again."""


def _iter_lines(response: Any) -> Iterator[str]:
    buffer = b""
    for chunk in response.stream(amt=None, decode_content=False):
        buffer += chunk if isinstance(chunk, bytes) else chunk.encode()
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.strip():
                yield line.decode("utf-8", errors="replace")
    if buffer.strip():
        yield buffer.decode("utf-8", errors="replace")


def _shutdown(response: Any) -> None:
    """Unblock a thread reading `response` by shutting its socket down."""
    try:
        sock = getattr(getattr(response, "connection", None), "sock", None) or getattr(response, "_sock", None)
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # Already closed.


class Informer:
    """The objects of one kind that match `label_selector` and `field_selector`, in every namespace.

    `list_function` is a client method such as `CoreV1Api.list_pod_for_all_namespaces`.
    `on_change` is called from the informer's thread after each change of the cache.
    """

    def __init__(
        self,
        api: KubernetesApi,
        kind: str,
        list_function: Callable[..., Any],
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        on_change: Callable[[], None] | None = None,
        watch_timeout_seconds: int = WATCH_TIMEOUT_SECONDS,
    ):
        self.api = api
        self.kind = kind
        self.list_function = list_function
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.on_change = on_change
        self.watch_timeout_seconds = watch_timeout_seconds
        self.last_error = ""
        self._objects: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._synced = False
        self._healthy = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._response: Any = None

    @property
    def has_synced(self) -> bool:
        """True once a list succeeded and while the watch since then works."""
        return self._synced and self._healthy

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=f"informer-{self.api.cluster}-{self.kind}", daemon=True)
        self._thread.start()

    def stop(self, timeout_seconds: float = 5.0) -> None:
        """Stop the thread: close the open watch and wait up to `timeout_seconds` for it to end."""
        self._stopping.set()
        response = self._response
        if response is not None:
            _shutdown(response)
        thread = self._thread
        if thread is not None:
            thread.join(timeout_seconds)
            if thread.is_alive():
                logger.warning(
                    "Informer of %s on cluster %s did not stop within %.0f s",
                    self.kind,
                    self.api.cluster,
                    timeout_seconds,
                )
        self._thread = None

    def items(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._objects.values())

    def _selectors(self) -> dict[str, str]:
        selectors = {}
        if self.label_selector:
            selectors["label_selector"] = self.label_selector
        if self.field_selector:
            selectors["field_selector"] = self.field_selector
        return selectors

    def _run(self) -> None:
        backoff = INITIAL_BACKOFF_SECONDS
        while not self._stopping.is_set():
            try:
                items, version = self.api.list_all_sync(
                    self.list_function, action=f"listing {self.kind}", **self._selectors()
                )
                self._replace(items)
                backoff = INITIAL_BACKOFF_SECONDS
                self._watch(version)
            except _Expired:
                logger.info("Watch of %s on cluster %s expired; listing again", self.kind, self.api.cluster)
            except KubernetesApiError as error:
                self._failed(str(error), backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            except Exception as error:  # The thread must survive anything the client or a callback raises.
                logger.exception("Informer of %s on cluster %s failed unexpectedly", self.kind, self.api.cluster)
                self._failed(f"{type(error).__name__}: {error}", backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    def _failed(self, message: str, backoff: float) -> None:
        if self._stopping.is_set():
            return
        if self._healthy or message != self.last_error:
            logger.warning(
                "Informer of %s on cluster %s failed, retrying in %.1f s: %s",
                self.kind,
                self.api.cluster,
                backoff,
                message,
            )
        self._healthy = False
        self.last_error = message
        self._notify()
        self._stopping.wait(backoff)

    def _replace(self, items: list[dict[str, Any]]) -> None:
        with self._lock:
            self._objects = {self._key(item): item for item in items}
        if not self._healthy and self.last_error:
            logger.info("Informer of %s on cluster %s recovered", self.kind, self.api.cluster)
        self._synced = True
        self._healthy = True
        self.last_error = ""
        self._notify()

    @staticmethod
    def _key(obj: dict[str, Any]) -> tuple[str, str]:
        metadata = obj.get("metadata") or {}
        return metadata.get("namespace") or "", metadata.get("name") or ""

    def _watch(self, version: str) -> None:
        """Keep watching from `version` until stopped; raise _Expired to list again, or
        KubernetesApiError for a failure other than an unreachable server.

        As client-go's reflector does, an unreachable server is waited for and watched again from
        the last version seen, and a list follows only when that version has expired."""
        backoff = INITIAL_BACKOFF_SECONDS
        while not self._stopping.is_set():
            try:
                version = self._watch_once(version)
                backoff = INITIAL_BACKOFF_SECONDS
            except KubernetesApiError as error:
                if error.status is not None:
                    raise
                self._failed(str(error), backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    def _watch_once(self, version: str) -> str:
        """Apply the events of one watch request; return the version to resume from when it ends."""
        try:
            response = self.list_function(
                watch=True,
                resource_version=version,
                timeout_seconds=self.watch_timeout_seconds,
                allow_watch_bookmarks=True,
                _preload_content=False,
                _request_timeout=(CONNECT_TIMEOUT, self.watch_timeout_seconds + 15),
                **self._selectors(),
            )
        except Exception as error:  # Every client failure maps to one error type.
            wrapped = to_cluster_manager_error(error, f"watching {self.kind}", self.api.cluster, self.api.host)
            if wrapped.status == 410:
                raise _Expired() from error
            raise wrapped from error
        if not self._healthy:
            logger.info("Watch of %s on cluster %s is back", self.kind, self.api.cluster)
            self._healthy = True
            self.last_error = ""
            self._notify()
        self._response = response
        try:
            for line in _iter_lines(response):
                version = self._apply(json.loads(line), version)
                if self._stopping.is_set():
                    break
        except (_Expired, KubernetesApiError):
            raise
        except Exception as error:  # A connection cut mid-stream surfaces as many exception types.
            if not self._stopping.is_set():
                raise to_cluster_manager_error(
                    error, f"watching {self.kind}", self.api.cluster, self.api.host
                ) from error
        finally:
            self._response = None
            # Closing first keeps a half-read connection out of the pool.
            response.close()
            response.release_conn()
        return version

    def _apply(self, event: dict[str, Any], version: str) -> str:
        """Apply one watch event to the cache; return the resourceVersion to resume from."""
        event_type = event.get("type")
        obj = event.get("object") or {}
        if event_type == "ERROR":
            if obj.get("code") == 410:
                raise _Expired()
            raise KubernetesApiError(
                f"watching {self.kind} on Kubernetes cluster {self.api.cluster!r} failed: {obj.get('message') or obj}",
                status=obj.get("code"),
                reason=obj.get("reason") or "",
            )
        new_version = (obj.get("metadata") or {}).get("resourceVersion") or version
        if event_type == "BOOKMARK":
            return new_version
        key = self._key(obj)
        with self._lock:
            if event_type == "DELETED":
                self._objects.pop(key, None)
            else:
                self._objects[key] = obj
        self._notify()
        return new_version

    def _notify(self) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change()
        except Exception:  # A failing callback must not end the informer.
            logger.exception("Change callback of the %s informer on cluster %s failed", self.kind, self.api.cluster)
