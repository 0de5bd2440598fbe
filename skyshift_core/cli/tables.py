"""kubectl-style tables: upper-case headers, columns padded to their widest cell, ages like `5s`, `3m`, `2h`, `4d`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from skyshift_core.objects import Object

# Spaces between columns, as kubectl's tabwriter uses.
COLUMN_GAP = 3
NONE = "<none>"


def human_duration(seconds: float) -> str:
    """Format a duration as kubectl's HumanDuration does (apimachinery `util/duration`).

    Precision drops as the duration grows: `90s`, `3m12s` below 10 minutes, `15m` below 3 hours,
    `5h30m` below 8 hours, `20h` below 2 days, `3d4h` below 8 days, `30d` below 2 years, then years.
    """
    # Like Go's int(), int() truncates toward zero, so -1.5 s still counts as "almost now".
    seconds = int(seconds)
    if seconds < -1:
        return "<invalid>"
    seconds = max(seconds, 0)
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        rest = seconds % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        rest = hours % 24
        return f"{days}d{rest}h" if rest else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    years, rest = divmod(days, 365)
    if years < 8:
        return f"{years}y{rest}d" if rest else f"{years}y"
    return f"{years}y"


def parse_timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def age(timestamp: Any, now: datetime | None = None) -> str:
    """Return the age of an ISO 8601 timestamp in kubectl's format, or `<unknown>` without one."""
    moment = parse_timestamp(timestamp)
    if moment is None:
        return "<unknown>"
    now = now or datetime.now(UTC)
    return human_duration((now - moment).total_seconds())


def format_labels(labels: Any) -> str:
    if not isinstance(labels, dict) or not labels:
        return NONE
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


class Table:
    """Rows that print aligned; rows added later widen the columns only for themselves, as in `kubectl get -w`."""

    def __init__(self, headers: Sequence[str]):
        self.headers = list(headers)
        self.widths = [len(header) for header in headers]

    def widen(self, rows: Sequence[Sequence[str]]) -> None:
        for row in rows:
            self.widths = [max(width, len(cell)) for width, cell in zip(self.widths, row)]

    def format_row(self, row: Sequence[str]) -> str:
        # The last column is not padded, so lines carry no trailing spaces.
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], self.widths[:-1])] + [row[-1]]
        return (" " * COLUMN_GAP).join(cells)

    def render(self, rows: Sequence[Sequence[str]], header: bool = True) -> str:
        self.widen(rows)
        lines = [self.format_row(self.headers)] if header else []
        lines.extend(self.format_row(row) for row in rows)
        return "\n".join(lines)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    return Table(headers).render(rows)


def object_headers(model: type[Object], *, namespace_column: bool, wide: bool) -> list[str]:
    """Headers of `skyshift get`: [NAMESPACE,] NAME, the kind's table_columns, [LABELS]."""
    headers = ["NAMESPACE"] if namespace_column else []
    headers += ["NAME", *model.table_columns]
    if wide:
        headers.append("LABELS")
    return headers


def object_row(model: type[Object], item: dict[str, Any], *, namespace_column: bool, wide: bool) -> list[str]:
    """One row of `skyshift get` for an object as the API returns it."""
    metadata = item.get("metadata") or {}
    try:
        values = model.model_validate(item).table_row()
    except ValidationError:
        # The server's version of the kind may differ from this CLI's; show what can be shown.
        values = {}
    row = [str(metadata.get("namespace") or "")] if namespace_column else []
    row.append(str(metadata.get("name", "")))
    for column in model.table_columns:
        if column == "AGE":
            row.append(age(metadata.get("creation_timestamp")))
        elif column == "STATUS" and metadata.get("deletion_timestamp"):
            # Deleted, waiting for its finalizers: kubectl shows such pods and namespaces this way.
            row.append("Terminating")
        else:
            row.append(str(values.get(column, "<unknown>")))
    if wide:
        row.append(format_labels(metadata.get("labels")))
    return row
