"""The audit log: one JSON line for every mutating request and every denied request.

Each entry records who (user, client address), what (method, path, verb, resource, namespace, name),
when (UTC time) and the outcome (HTTP code and one of allowed, failed, denied, unauthenticated,
rate-limited). With a path, entries are appended to that file (mode 0600, opened with O_APPEND so
several worker processes can share it); without one they go to the `skyshift_core.auth.audit`
logger at INFO. Entries never contain passwords, tokens or request bodies.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LEASES_PATH = "/api/v1/leases/"


def outcome_of(code: int) -> str:
    if code == 401:
        return "unauthenticated"
    if code == 403:
        return "denied"
    if code == 429:
        return "rate-limited"
    if code >= 400:
        return "failed"
    return "allowed"


def should_record(method: str, code: int, path: str = "") -> bool:
    """Mutating requests are recorded, reads only when they were denied.

    Routine leader-election traffic is left out: a holder renews its lease every few seconds, and
    a standby's attempts to acquire a held lease get 409. Without that, each controller manager
    would add thousands of entries a day. Acquisitions, releases and failed renewals, which
    change or lose leadership, are recorded.
    """
    if path.startswith(LEASES_PATH) and code < 500:
        if path.endswith("/renew") and code < 400:
            return False
        if path.endswith("/acquire") and code == 409:
            return False
    return method in MUTATING_METHODS or code in (401, 403, 429)


class AuditLog:
    def __init__(self, path: str | None = None):
        self.path = Path(path).expanduser() if path else None
        self._lock = threading.Lock()
        self._fd: int | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            logger.info("Writing the audit log to %s", self.path)

    def write(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, separators=(",", ":"), default=str)
        if self._fd is None:
            logger.info("%s", line)
            return
        data = (line + "\n").encode()
        with self._lock:
            try:
                os.write(self._fd, data)
            except OSError as error:
                # The request has already completed, so the entry is lost: log it as an error instead.
                logger.error("Could not write an audit entry to %s: %s; entry: %s", self.path, error, line)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
