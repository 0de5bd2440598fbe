"""`skyshift describe`: one object as readable text, with its conditions and the Events about it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from skyshift_core.cli.common import kind_name, to_yaml
from skyshift_core.cli.tables import NONE, Table, age, format_labels, parse_timestamp
from skyshift_core.client import SkyShiftClient
from skyshift_core.errors import ForbiddenError
from skyshift_core.objects import DEFAULT_NAMESPACE, Object

# Top-level fields shown in the header instead of as sections.
_ENVELOPE = ("kind", "api_version", "metadata", "status")
_INDENT = "  "


def _prune(value: Any) -> Any:
    """Drop empty mappings, empty lists and nulls, which only mean "not set"."""
    if isinstance(value, dict):
        pruned = {key: _prune(item) for key, item in value.items()}
        return {key: item for key, item in pruned.items() if item not in (None, {}, [])}
    if isinstance(value, list):
        return [_prune(item) for item in value]
    return value


# Resource amounts the API stores as numbers of MiB, shown with their unit as they are written.
_MEBIBYTE_FIELDS = ("memory", "disk")


def _mebibytes(amount: float) -> str:
    return f"{int(amount)}Mi" if float(amount).is_integer() else f"{round(amount, 3)}Mi"


def _with_units(value: Any) -> Any:
    """Show `memory` and `disk` amounts under any `resources`, `capacity` or `allocatable` as `512Mi`.

    A request of zero is left out, as kubectl shows only the resources a Pod requests, while a
    node's zero capacity or allocatable is shown as `0`."""
    if isinstance(value, list):
        return [_with_units(item) for item in value]
    if not isinstance(value, dict):
        return value
    result = {}
    for key, item in value.items():
        if key in ("resources", "capacity", "allocatable") and isinstance(item, dict):
            amounts = {}
            for name, amount in item.items():
                is_number = isinstance(amount, (int, float)) and not isinstance(amount, bool)
                if is_number and amount == 0 and key == "resources":
                    continue
                if is_number and name in _MEBIBYTE_FIELDS:
                    amount = _mebibytes(amount) if amount else "0"
                amounts[name] = amount
            item = amounts
        result[key] = _with_units(item)
    return result


def _indented_yaml(value: Any, depth: int = 1) -> str:
    text = to_yaml(value).rstrip("\n")
    return "\n".join(_INDENT * depth + line for line in text.splitlines())


def _section(title: str, value: Any) -> list[str]:
    value = _prune(_with_units(value))
    if value in (None, {}, []):
        return [f"{title}:  {NONE}"]
    if not isinstance(value, (dict, list)):
        return [f"{title}:  {value}"]
    return [f"{title}:", _indented_yaml(value)]


def _title(field_name: str) -> str:
    return " ".join(word.capitalize() for word in field_name.split("_"))


def _created(timestamp: Any) -> str:
    if parse_timestamp(timestamp) is None:
        return "<unknown>"
    return f"{timestamp} ({age(timestamp)} ago)"


def _header(model: type[Object], obj: dict[str, Any]) -> list[str]:
    """Return aligned `Label:  value` lines: the metadata, then the object's own top-level scalar fields."""
    metadata = obj.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    fields = [("Name", metadata.get("name", ""))]
    if model.namespaced:
        fields.append(("Namespace", metadata.get("namespace") or ""))
    fields += [
        ("Kind", obj.get("kind", kind_name(model))),
        ("Labels", format_labels(metadata.get("labels"))),
        ("Annotations", ",".join(f"{key}={value}" for key, value in sorted(annotations.items())) or NONE),
        ("UID", metadata.get("uid") or NONE),
        ("Resource Version", metadata.get("resource_version") or NONE),
        ("Generation", metadata.get("generation", 0)),
        ("Created", _created(metadata.get("creation_timestamp"))),
    ]
    if metadata.get("deletion_timestamp"):
        fields.append(("Deleting Since", metadata["deletion_timestamp"]))
    for field_name, value in obj.items():
        if field_name not in _ENVELOPE and not isinstance(value, (dict, list)):
            fields.append((_title(field_name), NONE if value is None else value))
    # Two spaces after the longest label's colon, as kubectl describe aligns its values.
    width = max(len(label) for label, _ in fields) + 3
    return [f"{label + ':':<{width}}{value}" for label, value in fields]


def _conditions(conditions: list[dict[str, Any]]) -> list[str]:
    if not conditions:
        return [f"Conditions:  {NONE}"]
    rows = [
        [
            str(condition.get("type", "")),
            str(condition.get("status", "")),
            str(condition.get("reason", "")),
            str(condition.get("message", "")),
            age(condition.get("last_transition_time")),
        ]
        for condition in conditions
    ]
    table = Table(["TYPE", "STATUS", "REASON", "MESSAGE", "AGE"]).render(rows)
    return ["Conditions:", *(_INDENT + line for line in table.splitlines())]


def _event_time(event: dict[str, Any]) -> datetime:
    for field_name in ("last_timestamp", "first_timestamp"):
        moment = parse_timestamp(event.get(field_name))
        if moment is not None:
            return moment
    return parse_timestamp((event.get("metadata") or {}).get("creation_timestamp")) or datetime.min.replace(tzinfo=UTC)


def _event_age(event: dict[str, Any]) -> str:
    """`3m`, or `3m (x4 over 10m)` for an event seen several times, as kubectl prints it."""
    last = _event_time(event)
    text = age(last.isoformat()) if last.year > 1 else "<unknown>"
    count = event.get("count") or 1
    first = parse_timestamp(event.get("first_timestamp"))
    if count > 1 and first is not None:
        text += f" (x{count} over {age(first.isoformat())})"
    return text


def _events(events: list[dict[str, Any]] | str) -> list[str]:
    if isinstance(events, str):
        return [f"Events:  {events}"]
    if not events:
        return [f"Events:  {NONE}"]
    rows = [
        [str(event.get("type", "")), str(event.get("reason", "")), _event_age(event), str(event.get("source") or ""),
         str(event.get("message", ""))]
        for event in events
    ]  # fmt: skip
    table = Table(["TYPE", "REASON", "AGE", "FROM", "MESSAGE"]).render(rows)
    return ["Events:", *(_INDENT + line for line in table.splitlines())]


def describe_object(model: type[Object], obj: dict[str, Any], events: list[dict[str, Any]] | str) -> str:
    """Render an object as `skyshift describe` prints it; `events` is a text in place of the
    Events when they could not be read."""
    lines = _header(model, obj)
    for field_name, value in obj.items():
        if field_name not in _ENVELOPE and isinstance(value, (dict, list)):
            lines += _section(_title(field_name), value)

    status = obj.get("status")
    conditions = None
    if isinstance(status, dict):
        status = dict(status)
        conditions = status.pop("conditions", None)
        # The scheduler's record of its last cycle is bookkeeping; explain renders it for people.
        scheduling = status.pop("scheduling", None) if kind_name(model) == "Job" else None
        lines += _section("Status", status)
        if scheduling:
            name = (obj.get("metadata") or {}).get("name", "NAME")
            lines.append(f"Scheduling:  see skyshift explain job {name}")
    if conditions is not None:
        lines += _conditions(conditions)
    if kind_name(model) != "Event":
        lines += _events(events)
    return "\n".join(lines)


def related_events(client: SkyShiftClient, model: type[Object], obj: dict[str, Any]) -> list[dict[str, Any]]:
    """List the Events whose involved_object is `obj`, oldest first.

    Events of a namespaced object live in its namespace; those of a cluster-scoped object may be in
    any namespace. An event that records a uid must match the object's uid, so events about an
    earlier object of the same name are left out.
    """
    metadata = obj.get("metadata") or {}
    namespace = metadata.get("namespace") if model.namespaced else None
    try:
        listing = client.list_all("events", namespace, all_namespaces=not model.namespaced)
    except ForbiddenError:
        if model.namespaced:
            raise
        # SkyShift's controllers record the Events of cluster-scoped objects in `default`, which a
        # user who may not list Events everywhere may still read.
        listing = client.list_all("events", DEFAULT_NAMESPACE)
    kind = kind_name(model)
    related = []
    for event in listing["items"]:
        involved = event.get("involved_object") or {}
        if involved.get("kind") != kind or involved.get("name") != metadata.get("name"):
            continue
        if model.namespaced and involved.get("namespace") not in (None, namespace):
            continue
        if involved.get("uid") and metadata.get("uid") and involved["uid"] != metadata["uid"]:
            continue
        related.append(event)
    return sorted(related, key=_event_time)
