"""Recording Events about objects, for `skyshift describe`: one Event per (object, source, reason,
message), counted when it happens again, as Kubernetes' event recorder does."""

from __future__ import annotations

import hashlib
import logging

from skyshift_core.client import AsyncSkyShiftClient
from skyshift_core.errors import AlreadyExistsError, SkyShiftError
from skyshift_core.objects import Event, Object, utc_now

logger = logging.getLogger(__name__)


def single_line(text: str) -> str:
    """Join the non-empty lines of a backend's message with "; ", so that it fits one row of
    `skyshift describe`'s Events and Conditions tables."""
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def event_name(obj: Object, reason: str, message: str, source: str) -> str:
    """Return a stable name, so a repeated event updates its count instead of piling up objects.

    The source is part of it, so the same warning from two clusters' skylets stays two Events."""
    digest = hashlib.sha1(f"{obj.metadata.uid}/{source}/{reason}/{message}".encode()).hexdigest()[:10]
    return f"{obj.metadata.name[:50].rstrip('-')}-{digest}"


async def record_event(
    client: AsyncSkyShiftClient, obj: Object, event_type: str, reason: str, message: str, source: str, *, count: int = 1
) -> None:
    """Create the Event, or add `count` occurrences to it; failures are logged, never raised, because an
    Event is a courtesy to users and must not fail the controller that records it."""
    namespace = obj.metadata.namespace or "default"
    name = event_name(obj, reason, message, source)
    now = utc_now()
    event = Event(
        metadata={"name": name, "namespace": namespace},
        involved_object={"kind": obj.kind, "name": obj.metadata.name, "namespace": obj.metadata.namespace, "uid": obj.metadata.uid},
        reason=reason,
        message=message,
        type=event_type,
        source=source,
        count=count,
        first_timestamp=now,
        last_timestamp=now,
    )
    try:
        await client.create(event)
    except AlreadyExistsError:
        try:
            current = await client.get(Event, name, namespace)
            patch = {"count": current.get("count", 1) + count, "last_timestamp": now.isoformat()}
            await client.patch(Event, name, patch, namespace)
        except SkyShiftError as error:
            logger.warning("Could not update Event %s/%s: %s", namespace, name, error)
    except SkyShiftError as error:
        logger.warning("Could not record Event %s for %s %s/%s: %s", reason, obj.kind, namespace, obj.metadata.name, error)
