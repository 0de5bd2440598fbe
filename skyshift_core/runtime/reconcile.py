"""The reconciler contract: what a controller hands a reconciler and which outcomes it may return.

A reconciler receives only a `Request` (kind, namespace, name), reads the current state itself
(from an informer's cache or the API), and drives the world toward the object's spec. Because the
request carries no event, reconciling is level-based: running it twice, or after a restart,
must be harmless. The `Controller` acts on the outcome:

- return `Result()` or None: done; the key is processed again only when something changes.
- return `Result(requeue_after=N)`: done for now, and the controller processes the key again
  in N seconds. Use it to poll state outside SkyShift, such as a job on a cluster.
- raise `TerminalError(reason, message)`: the object cannot be reconciled until someone changes
  it. No retry; the controller records a `ReconcileError` condition in the object's status.
- raise any other exception: a temporary failure; the controller retries with per-key
  exponential backoff.
"""

from __future__ import annotations

import contextvars
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable, Protocol, Union

from skyshift_core.objects.meta import Object

logger = logging.getLogger(__name__)

# Condition type that a TerminalError is recorded under.
RECONCILE_ERROR_CONDITION = "ReconcileError"

_reconcile_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("skyshift_reconcile_id", default=None)


@dataclass(frozen=True, order=True)
class Request:
    """The object to reconcile: its kind name (as in `Job`), namespace (None when cluster-scoped) and name."""

    kind: str
    namespace: str | None
    name: str

    @classmethod
    def for_object(cls, obj: Object) -> "Request":
        namespace = obj.metadata.namespace if type(obj).namespaced else None
        return cls(obj.kind, namespace, obj.metadata.name)

    def __str__(self) -> str:
        if self.namespace is None:
            return f"{self.kind} '{self.name}'"
        return f"{self.kind} '{self.namespace}/{self.name}'"


@dataclass(frozen=True)
class Result:
    """A successful reconcile; with `requeue_after` (seconds), reconcile the same request again then."""

    requeue_after: float | None = None

    def __post_init__(self) -> None:
        if self.requeue_after is not None and self.requeue_after < 0:
            raise ValueError(f"invalid requeue_after {self.requeue_after!r}: expected seconds >= 0, or None")


class TerminalError(Exception):
    """A failure that retrying cannot fix, such as an invalid spec; recorded as a condition, never retried.

    `reason` is a CamelCase word for machines (`InvalidPlacement`). `message` states what is
    wrong and what the user must change.
    """

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class Reconciler(Protocol):
    async def reconcile(self, request: Request) -> Result | None:
        """Drive the object named by `request` toward its desired state; see the module docstring for outcomes."""


ReconcileFunction = Callable[[Request], Awaitable[Union[Result, None]]]


def current_reconcile_id() -> str | None:
    """Return the id of the reconcile running in this task, for a reconciler's own log lines, or None outside one."""
    return _reconcile_id.get()


def set_reconcile_id(value: str | None) -> contextvars.Token:
    return _reconcile_id.set(value)


def reset_reconcile_id(token: contextvars.Token) -> None:
    _reconcile_id.reset(token)
