"""Informers: a local, watch-fed cache of one kind's objects that notifies handlers and work queues of each change.

Controllers build one informer per kind they read and register their work queues on it. An
informer lists the kind through the API server, then watches from the list's resource_version.
After a dropped connection it resumes from the last resource_version it saw (events and
bookmarks both advance it). After 410 Gone it lists again and reports the objects that vanished
meanwhile as deleted.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from skyshift_core.client import AsyncSkyShiftClient, resolve_model
from skyshift_core.errors import GoneError, InvalidError, SkyShiftError, UnavailableError
from skyshift_core.objects import parse_object
from skyshift_core.objects.meta import Object
from skyshift_core.runtime.reconcile import Request
from skyshift_core.runtime.workqueue import WorkQueue

logger = logging.getLogger(__name__)

# Seconds between re-deliveries of every cached object, so a missed change is reconciled anyway.
DEFAULT_RESYNC_PERIOD = 300.0
# Delays before listing or watching again after the API server failed: 0.2 s doubling to 5 s.
_INITIAL_RETRY_DELAY = 0.2
_MAX_RETRY_DELAY = 5.0

CacheKey = tuple[str | None, str]
MapToRequests = Callable[[Object], Iterable[Request]]


@dataclass
class _Handler:
    on_add: Callable[[Object], Any] | None = None
    on_update: Callable[[Object, Object], Any] | None = None
    on_delete: Callable[[Object], Any] | None = None


class Informer:
    """A cache of the objects of `kind` (in `namespace`, or all namespaces when None) matching `selector`.

    Handlers run on the informer's task, in event order. They must be quick synchronous functions
    that enqueue a key or set a flag, because slow work belongs in a controller. Cached objects are
    shared, so copy one (`obj.model_copy(deep=True)`) before changing it.
    """

    def __init__(
        self,
        client: AsyncSkyShiftClient,
        kind: str | type[Object],
        namespace: str | None = None,
        selector: str | Mapping[str, str] | None = None,
        resync_period: float | None = DEFAULT_RESYNC_PERIOD,
    ):
        if resync_period is not None and resync_period <= 0:
            raise ValueError(f"invalid resync_period {resync_period!r}: expected seconds > 0, or None to disable")
        self.client = client
        self.model: type[Object] = resolve_model(kind)
        self.kind: str = self.model.model_fields["kind"].default
        self.namespace = namespace if self.model.namespaced else None
        self.selector = selector
        self.resync_period = resync_period
        self._cache: dict[CacheKey, Object] = {}
        self._handlers: list[_Handler] = []
        self._resource_version: str | None = None
        self._synced = asyncio.Event()
        self._task: asyncio.Task | None = None

    def __repr__(self) -> str:
        scope = f" in namespace '{self.namespace}'" if self.namespace else ""
        return f"<Informer {self.kind}{scope}>"

    # ---- cache ---------------------------------------------------------------------------

    @property
    def has_synced(self) -> bool:
        """True once the first list has filled the cache and been delivered to the handlers."""
        return self._synced.is_set()

    @property
    def resource_version(self) -> str | None:
        """The last resource_version seen, from a list, an event or a bookmark; None before the first list."""
        return self._resource_version

    async def wait_for_sync(self, timeout: float | None = None) -> bool:
        """Wait until the first list is delivered; return False when `timeout` seconds pass first."""
        # asyncio.timeout keeps a cancellation that arrives with the sync, which wait_for drops on 3.11.
        try:
            async with asyncio.timeout(timeout):
                await self._synced.wait()
        except TimeoutError:
            return False
        return True

    def key_of(self, obj: Object) -> CacheKey:
        return (obj.metadata.namespace if self.model.namespaced else None, obj.metadata.name)

    def get(self, name: str, namespace: str | None = None) -> Object | None:
        """Return the cached object, or None; `namespace` is ignored for cluster-scoped kinds."""
        return self._cache.get((namespace if self.model.namespaced else None, name))

    def list(self) -> list[Object]:
        return list(self._cache.values())

    def keys(self) -> list[CacheKey]:
        return list(self._cache)

    # ---- handlers ------------------------------------------------------------------------

    def add_event_handler(
        self,
        on_add: Callable[[Object], Any] | None = None,
        on_update: Callable[[Object, Object], Any] | None = None,
        on_delete: Callable[[Object], Any] | None = None,
    ) -> None:
        """Register callbacks: `on_add(obj)`, `on_update(old, new)`, `on_delete(last_known)`.

        A periodic resync calls `on_update(obj, obj)` for every cached object. A handler added
        after the first list gets `on_add` for every cached object at once.
        """
        for callback in (on_add, on_update, on_delete):
            if callback is not None and inspect.iscoroutinefunction(callback):
                raise TypeError(
                    f"informer handler {callback.__qualname__} is a coroutine function; handlers must be "
                    "synchronous and quick: enqueue a key and do the work in a controller"
                )
        handler = _Handler(on_add, on_update, on_delete)
        self._handlers.append(handler)
        if self.has_synced and on_add is not None:
            for obj in list(self._cache.values()):
                self._call(on_add, obj)

    def add_queue(self, queue: WorkQueue[Request], map_to_requests: MapToRequests | None = None) -> None:
        """Enqueue a `Request` into `queue` for every added, changed, deleted or resynced object.

        Without `map_to_requests` the request names the object itself. With it, the function
        returns the requests that an object concerns, such as the Jobs placed on a changed
        Cluster, and on a change both the old and the new object are mapped.
        """

        def enqueue(obj: Object) -> None:
            requests = [Request.for_object(obj)] if map_to_requests is None else map_to_requests(obj)
            for request in requests:
                queue.add(request)

        def enqueue_both(old: Object, new: Object) -> None:
            if map_to_requests is not None and old is not new:
                enqueue(old)
            enqueue(new)

        self.add_event_handler(on_add=enqueue, on_update=enqueue_both, on_delete=enqueue)

    def _call(self, callback: Callable[..., Any], *objects: Object) -> None:
        try:
            callback(*objects)
        except Exception:  # One faulty handler must not stop the others or the informer.
            logger.exception(
                "Informer handler %s failed on %s '%s'; continuing with the next event",
                getattr(callback, "__qualname__", callback), self.kind, objects[-1].metadata.name,
            )  # fmt: skip

    def _added(self, obj: Object) -> None:
        for handler in self._handlers:
            if handler.on_add is not None:
                self._call(handler.on_add, obj)

    def _updated(self, old: Object, new: Object) -> None:
        for handler in self._handlers:
            if handler.on_update is not None:
                self._call(handler.on_update, old, new)

    def _deleted(self, obj: Object) -> None:
        for handler in self._handlers:
            if handler.on_delete is not None:
                self._call(handler.on_delete, obj)

    def resync(self) -> None:
        """Deliver every cached object again as an update of itself (queues get every key again)."""
        for obj in list(self._cache.values()):
            self._updated(obj, obj)

    # ---- lifecycle -----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> asyncio.Task:
        """Start listing and watching on a task of its own, unless already running; return that task."""
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self.run(), name=f"informer-{self.kind}")
        return self._task

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def run(self) -> None:
        """List, then watch, until cancelled; API server failures are retried with backoff."""
        resync_task = None
        if self.resync_period is not None:
            resync_task = asyncio.get_running_loop().create_task(self._resync_loop(), name=f"resync-{self.kind}")
        delay = _INITIAL_RETRY_DELAY
        try:
            while True:
                try:
                    if self._resource_version is None:
                        await self._list()
                    await self._watch()
                    delay = _INITIAL_RETRY_DELAY
                except GoneError as error:
                    logger.info(
                        "%s: resource_version %s has expired (%s); listing again",
                        self, self._resource_version, error.message,
                    )  # fmt: skip
                    self._resource_version = None
                except Exception as error:
                    # Unavailable is expected during restarts; anything else needs a look, with its traceback
                    # when it is not one of the core's errors.
                    expected = isinstance(error, UnavailableError)
                    message = error.message if isinstance(error, SkyShiftError) else repr(error)
                    next_step = "listing" if self._resource_version is None else f"watching from {self._resource_version}"
                    logger.log(
                        logging.WARNING if expected else logging.ERROR,
                        "%s: %s; %s again in %.1f s", self, message, next_step, delay,
                        exc_info=not isinstance(error, SkyShiftError),
                    )  # fmt: skip
                    await asyncio.sleep(delay * (1 + random.random() / 4))
                    delay = min(delay * 2, _MAX_RETRY_DELAY)
        finally:
            if resync_task is not None:
                resync_task.cancel()

    async def _resync_loop(self) -> None:
        assert self.resync_period is not None
        while True:
            await asyncio.sleep(self.resync_period)
            if self.has_synced:
                logger.debug("%s: resyncing %d cached objects", self, len(self._cache))
                self.resync()

    # ---- list and watch ------------------------------------------------------------------

    def _parse(self, data: dict) -> Object | None:
        try:
            return parse_object(data, self.model)
        except InvalidError as error:
            metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
            logger.error(
                "%s: skipping %s '%s' that does not validate: %s",
                self, self.kind, metadata.get("name", "?"), error.message,
            )  # fmt: skip
            return None

    async def _list(self) -> None:
        body = await self.client.list_all(
            self.model,
            self.namespace,
            all_namespaces=self.model.namespaced and self.namespace is None,
            label_selector=self.selector,
        )
        listed: dict[CacheKey, Object] = {}
        for data in body["items"]:
            obj = self._parse(data)
            if obj is not None:
                listed[self.key_of(obj)] = obj

        # The cache is replaced first, so handlers that read it see the listed state.
        previous, self._cache = self._cache, listed
        self._resource_version = str(body["metadata"]["resource_version"])
        for key, obj in listed.items():
            old = previous.get(key)
            if old is None:
                self._added(obj)
            elif old.metadata.resource_version != obj.metadata.resource_version:
                self._updated(old, obj)
        vanished = [obj for key, obj in previous.items() if key not in listed]
        for obj in vanished:
            self._deleted(obj)
        logger.info(
            "%s: listed %d objects at resource_version %s (%d gone since the previous list); watching",
            self, len(listed), self._resource_version, len(vanished),
        )  # fmt: skip
        self._synced.set()

    async def _watch(self) -> None:
        """Apply watch events until the server ends the stream; raise on errors."""
        events = self.client.watch(
            self.model,
            self.namespace,
            all_namespaces=self.model.namespaced and self.namespace is None,
            resource_version=self._resource_version,
            label_selector=self.selector,
            bookmarks=True,
        )
        async for event_type, data in events:
            self._apply(event_type, data)

    def _apply(self, event_type: str, data: dict) -> None:
        metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
        resource_version = metadata.get("resource_version")
        if event_type == "BOOKMARK":
            if resource_version:
                self._resource_version = str(resource_version)
            return
        obj = self._parse(data)
        if obj is not None:
            key = self.key_of(obj)
            if event_type in ("ADDED", "MODIFIED"):
                old = self._cache.get(key)
                self._cache[key] = obj
                if old is None:
                    self._added(obj)
                elif old.metadata.resource_version != obj.metadata.resource_version:
                    self._updated(old, obj)
            elif event_type == "DELETED":
                # Only objects that were announced are reported gone.
                if self._cache.pop(key, None) is not None:
                    self._deleted(obj)
            else:
                logger.warning("%s: ignoring a watch event of unknown type %r", self, event_type)
        if resource_version:
            self._resource_version = str(resource_version)
