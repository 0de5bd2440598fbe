"""Watch streams: newline-delimited JSON events, with periodic bookmarks.

Each line is `{"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, "object": {...}}`. A bookmark's
object carries only `metadata.resource_version`: every change up to that version has been sent,
so a client that reconnects can resume from it. A version that etcd has compacted answers
410 Gone before the stream starts, or an ERROR event with a 410 Status once it has started. A
version that etcd has not reached fails with 504 "Too large resource version" before the stream starts.

When the server shuts down, `WatchDrain` ends every open stream cleanly, so that its client
watches again, from its last resource_version, on another replica or on the restarted server.

A watch may stay open for hours, so the caller's token and permission are checked again at every
bookmark interval, not only when it opens. A revoked token, a deleted user or a removed Role
binding ends the stream with an ERROR event carrying the 401 or 403 Status.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import AsyncIterator, Awaitable, Callable, Sequence

from fastapi import Response
from fastapi.responses import StreamingResponse

from skyshift_core.api.metrics import ApiMetrics
from skyshift_core.api.status import status_body
from skyshift_core.errors import BadRequestError, GoneError, SkyShiftError
from skyshift_core.objects.meta import Object
from skyshift_core.objects.selectors import FieldRequirement, Requirement
from skyshift_core.store import Store

logger = logging.getLogger(__name__)

MAX_TIMEOUT_SECONDS = 3600
# The annotation of the bookmark that ends the initial events of a watch with sendInitialEvents=true.
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


class WatchDrain:
    """The open watch streams of one server, which `drain` ends when the server shuts down.

    Without it, uvicorn waits its whole graceful shutdown timeout for streams that never end,
    then cancels them, and clients see a cut chunked response instead of a finished one."""

    def __init__(self) -> None:
        self.draining = False
        self._stops: set[asyncio.Future[None]] = set()

    def register(self) -> asyncio.Future[None]:
        """Return a future that completes when the stream must end."""
        stop = asyncio.get_running_loop().create_future()
        if self.draining:
            stop.set_result(None)
        self._stops.add(stop)
        return stop

    def unregister(self, stop: asyncio.Future[None]) -> None:
        self._stops.discard(stop)

    def drain(self) -> None:
        """End every open stream; streams opened from now on end at once."""
        self.draining = True
        for stop in self._stops:
            if not stop.done():
                stop.set_result(None)


def _line(event_type: str, obj: dict) -> bytes:
    return json.dumps({"type": event_type, "object": obj}, separators=(",", ":")).encode() + b"\n"


def _bookmark(kind: str, revision: int, annotations: dict[str, str] | None = None) -> bytes:
    metadata: dict = {"resource_version": str(revision)}
    if annotations:
        metadata["annotations"] = annotations
    return _line("BOOKMARK", {"kind": kind, "api_version": "v1", "metadata": metadata})


def _unreadable(kind: str, where: str, error: Exception) -> dict:
    message = (
        f"the watch of {kind} cannot read a stored change {where} ({type(error).__name__}); "
        "see the API server's log"
    )
    return status_body(500, "InternalError", message)


async def watch_response(
    store: Store,
    model: type[Object],
    namespace: str | None,
    resource_version: int | None,
    selector: tuple[Requirement, ...],
    field_selector: tuple[FieldRequirement, ...],
    timeout_seconds: int | None,
    bookmark_interval: float,
    metrics: ApiMetrics,
    drain: WatchDrain | None = None,
    recheck: Callable[[], Awaitable[None]] | None = None,
    initial_events: bool | None = None,
) -> Response:
    """Stream the changes of `model`. `recheck` raises a SkyShiftError once the caller may no longer
    watch; it runs once per bookmark interval.

    `initial_events` is Kubernetes' sendInitialEvents. True: the current objects come first as
    ADDED events (their state not older than `resource_version`), then at once a bookmark
    annotated `k8s.io/initial-events-end`, then the changes. False: only changes, from
    `resource_version` or, without one, from now. None: as Kubernetes without the parameter, the
    current objects come first only when there is no `resource_version`."""
    kind = model.model_fields["kind"].default
    if timeout_seconds is not None and not 0 < timeout_seconds <= MAX_TIMEOUT_SECONDS:
        raise BadRequestError(
            f"invalid timeout_seconds {timeout_seconds}: expected 1 to {MAX_TIMEOUT_SECONDS}, or leave it out"
        )
    initial: list[Object] = []
    if initial_events or (initial_events is None and not resource_version):
        # The current objects come first as ADDED events, as in Kubernetes. The stream starts at
        # the list's revision, so its bookmarks carry that revision even when the newest object
        # listed is older or nothing is listed.
        if resource_version:
            await store.wait_for_revision(resource_version)
        listing = await store.list(model, namespace, selector=selector, field_selector=field_selector)
        initial = listing.items
        resource_version = int(listing.resource_version)
    elif not resource_version:
        resource_version = await store.ping()
    else:
        # Fail before the stream starts: with 504 when etcd has not reached the version (after a
        # short wait), with 410 when the version is already compacted.
        await store.wait_for_revision(resource_version)
        await store.check_revision(resource_version + 1)
    events = store.watch(
        model, namespace, resource_version=resource_version, selector=selector, field_selector=field_selector
    )
    return StreamingResponse(
        _stream(
            events, kind, resource_version, timeout_seconds, bookmark_interval, metrics, drain or WatchDrain(),
            recheck, initial, announce_end=bool(initial_events),
        ),
        media_type="application/json",
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


async def _stream(
    events,
    kind: str,
    start_revision: int,
    timeout_seconds: int | None,
    bookmark_interval: float,
    metrics: ApiMetrics,
    drain: WatchDrain,
    recheck: Callable[[], Awaitable[None]] | None = None,
    initial: Sequence[Object] = (),
    announce_end: bool = False,
) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    end_at = loop.time() + timeout_seconds if timeout_seconds else None
    recheck_at = loop.time() + bookmark_interval
    last_revision = start_revision
    gauge = metrics.open_watches.labels(kind)
    gauge.inc()
    next_event: asyncio.Task | None = None
    stop = drain.register()
    try:
        for item in initial:
            yield b'{"type":"ADDED","object":' + item.model_dump_json().encode() + b"}\n"
        if announce_end:
            yield _bookmark(kind, last_revision, {INITIAL_EVENTS_END: "true"})
        while True:
            if stop.done():
                return
            if recheck is not None and loop.time() >= recheck_at:
                recheck_at = loop.time() + bookmark_interval
                try:
                    await recheck()
                except SkyShiftError as error:
                    logger.info("Watch of %s ended: the caller may no longer watch: %s", kind, error.message)
                    yield _line("ERROR", status_body(error.status_code, error.reason, error.message))
                    return
            if next_event is None:
                next_event = asyncio.ensure_future(events.__anext__())
            wait = bookmark_interval
            if end_at is not None:
                wait = min(wait, end_at - loop.time())
                if wait <= 0:
                    return
            done, _ = await asyncio.wait({next_event, stop}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            if stop in done and next_event not in done:
                return
            if not done:
                if end_at is not None and loop.time() >= end_at:
                    return
                yield _bookmark(kind, last_revision)
                continue
            task, next_event = next_event, None
            try:
                event = task.result()
            except StopAsyncIteration:
                return
            except GoneError as error:
                yield _line("ERROR", status_body(410, "Expired", error.message))
                return
            except SkyShiftError as error:
                logger.warning("Watch of %s ended with an error: %s", kind, error.message)
                yield _line("ERROR", status_body(error.status_code, error.reason, error.message))
                return
            except Exception as error:  # noqa: BLE001 - a stored value this server cannot read
                logger.exception("Watch of %s ended after revision %d", kind, last_revision)
                yield _line("ERROR", _unreadable(kind, f"after revision {last_revision}", error))
                return
            try:
                line = b'{"type":"' + event.type.encode() + b'","object":' + event.object_json() + b"}\n"
            except Exception as error:  # noqa: BLE001 - a stored value this server cannot read
                # End with a Status the client can show, not a cut stream that it would retry blindly.
                logger.exception("Watch of %s ended: the object at revision %d cannot be read", kind, event.revision)
                yield _line("ERROR", _unreadable(kind, f"at revision {event.revision}", error))
                return
            last_revision = event.revision
            yield line
    finally:
        drain.unregister(stop)
        gauge.dec()
        if next_event is not None:
            next_event.cancel()
            with contextlib.suppress(BaseException):
                await next_event
        with contextlib.suppress(Exception):
            await events.aclose()
