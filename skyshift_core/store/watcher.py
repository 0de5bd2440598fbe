"""An etcd watcher that matches each watch to etcd's "created" response by a watch id that it assigns.

aetcd's `Watcher` sends one create request at a time and gives the next "created" response on
the stream to whichever request waits at that moment. When a create times out, as it does while
etcd restarts, etcd may still confirm it later, and aetcd then gives that response to the next
request. A watch of Jobs then receives the events of a Cluster watch, and its own response is lost.
etcd 3.4 and later take a client-assigned `watch_id` in the create request and return it in the
response, so this watcher keys every waiting create by that id. A watch created for a request that
timed out is cancelled.

It also avoids a deadlock in aetcd's stream handler. When the client closes at the moment its
stream fails, the handler and `shutdown` wait for each other, and every watch and request that
needs the client then hangs (see `_handle_request`). This happened after etcd restarts.

NOTE: this relies on the internals of aetcd 1.x's `Watcher`: its lock, request queue, callbacks
and stream handling. Check it again when the aetcd pin changes.
"""

from __future__ import annotations

import asyncio
import itertools
import logging

from aetcd import exceptions, rtypes
from aetcd.watcher import Watcher, WatcherCallback

logger = logging.getLogger(__name__)


class KeyedWatcher(Watcher):
    """A `Watcher` whose creates carry their own watch ids, so that responses cannot be swapped."""

    def __init__(self, watchstub, timeout=None, metadata=None):
        super().__init__(watchstub, timeout=timeout, metadata=metadata)
        # Ids stay unique for the life of this watcher, across the streams it opens.
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[WatcherCallback, asyncio.Event]] = {}

    async def add_callback(
        self,
        key: bytes,
        callback,
        range_end: bytes | None = None,
        start_revision: int | None = None,
        progress_notify: bool = False,
        kind: rtypes.EventKind | None = None,
        prev_kv: bool = False,
        watch_id: int | None = None,
        fragment: bool = False,
    ) -> WatcherCallback:
        """Create a watch and return its callback record once etcd has confirmed it.

        Raises WatchTimeoutError when etcd does not confirm the watch within the timeout, and the
        stream's error when the stream ends first. `watch_id` is ignored: this watcher assigns ids.
        """
        watcher_callback = WatcherCallback(callback)
        watcher_callback.prev_kv = prev_kv
        created = asyncio.Event()
        async with self._lock:
            await self.setup()
            assigned = next(self._ids)
            self._pending[assigned] = (watcher_callback, created)
            request = self._build_watch_create_request(
                key,
                range_end=range_end,
                start_revision=start_revision,
                progress_notify=progress_notify,
                kind=kind,
                prev_kv=prev_kv,
            )
            request.create_request.watch_id = assigned
            request.create_request.fragment = fragment
            await self._request_queue.put(request)
        try:
            await asyncio.wait_for(created.wait(), self._timeout)
        except asyncio.TimeoutError:
            raise exceptions.WatchTimeoutError from None
        finally:
            async with self._lock:
                self._pending.pop(assigned, None)
        if watcher_callback.error is not None:
            raise watcher_callback.error
        if watcher_callback.watch_id is None:
            # The stream closed (the client shut down) before etcd confirmed the watch.
            raise exceptions.WatchTimeoutError
        return watcher_callback

    async def _handle_response(self, response) -> None:
        async with self._lock:
            if response.created:
                entry = self._pending.get(response.watch_id)
                if entry is None:
                    # The create timed out and its caller has gone: drop the watch in etcd too.
                    if not response.canceled:
                        await self._enqueue_watch_cancel(watch_id=response.watch_id)
                    return
                watcher_callback, created = entry
                if response.canceled:
                    watcher_callback.error = exceptions.ClientError(
                        f"etcd rejected watch {response.watch_id}: {response.cancel_reason or 'no reason given'}"
                    )
                elif response.compact_revision != 0:
                    watcher_callback.error = exceptions.RevisionCompactedError(response.compact_revision)
                else:
                    self._callbacks[response.watch_id] = watcher_callback
                    watcher_callback.watch_id = response.watch_id
                created.set()
                if watcher_callback.error is not None:
                    return
            watcher_callback = self._callbacks.get(response.watch_id)

        if watcher_callback is None:
            return  # A response for a watch that was cancelled.
        if response.compact_revision != 0:
            await self._process_callback(watcher_callback, exceptions.RevisionCompactedError(response.compact_revision))
            await self.cancel(response.watch_id)
            return
        for event in response.events:
            previous = event.prev_kv if watcher_callback.prev_kv else None
            await self._process_callback(watcher_callback, rtypes.Event(event.type, event.kv, previous))

    async def _handle_request(self, metadata) -> None:
        try:
            async for response in self._watchstub.Watch(self._iter_request(), metadata=metadata):
                if response is None:
                    break
                await self._handle_response(response)
        except Exception as error:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # `shutdown` cancelled this task and waits for it while it holds the handler lock.
                # When the stream fails at that moment, gRPC raises its error instead of the
                # cancellation, and aetcd's handler would then wait for that lock forever.
                raise asyncio.CancelledError() from error
            await self._terminate_stream(error)

    async def _terminate_stream(self, error) -> None:
        async with self._lock:
            for watcher_callback, created in self._pending.values():
                watcher_callback.error = error
                created.set()
        await super()._terminate_stream(error)
