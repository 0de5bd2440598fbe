"""Rate limits on failed logins and registrations, per user name and per client address.

Counts live in the memory of one API server process, so with N API servers behind a load balancer
an attacker gets up to N times the limit. Even so, the limits stay far below the attempts that
guessing a password of reasonable length needs. A successful login resets the user's count but not
the address's.
"""

from __future__ import annotations

import math
import time
from collections import deque

from skyshift_core.errors import TooManyRequestsError

# Keys tracked per limiter before those without recent failures are dropped.
_MAX_KEYS = 100_000


class FailureLimiter:
    """Allows at most `max_failures` failures per key within any `window_seconds`."""

    def __init__(self, max_failures: int, window_seconds: float):
        if max_failures < 1 or window_seconds <= 0:
            raise ValueError(
                f"invalid rate limit: {max_failures} failures per {window_seconds} s; "
                "expected at least 1 failure and a positive window"
            )
        self.max_failures = max_failures
        self.window_seconds = window_seconds
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures.get(key)
        if failures is None:
            return deque()
        while failures and now - failures[0] >= self.window_seconds:
            failures.popleft()
        if not failures:
            del self._failures[key]
        return failures

    def retry_after(self, key: str) -> float | None:
        """Seconds until `key` may try again, or None when it may try now."""
        now = time.monotonic()
        failures = self._recent(key, now)
        if len(failures) < self.max_failures:
            return None
        return failures[0] + self.window_seconds - now

    def record_failure(self, key: str) -> None:
        now = time.monotonic()
        if len(self._failures) >= _MAX_KEYS:
            for stale in list(self._failures):
                self._recent(stale, now)
        self._failures.setdefault(key, deque()).append(now)

    def reset(self, key: str) -> None:
        self._failures.pop(key, None)


class LoginLimiter:
    """One limiter per user name and one per client address, checked together."""

    def __init__(self, per_user: int, per_address: int, window_seconds: float):
        self.users = FailureLimiter(per_user, window_seconds)
        self.addresses = FailureLimiter(per_address, window_seconds)

    def check(self, user: str | None, address: str | None) -> None:
        """Raise TooManyRequestsError, with the seconds to wait, when the user or the address is blocked."""
        waits = []
        if user:
            waits.append(("user", user, self.users.retry_after(user)))
        if address:
            waits.append(("client address", address, self.addresses.retry_after(address)))
        for what, key, wait in waits:
            if wait is not None:
                seconds = max(1, math.ceil(wait))
                error = TooManyRequestsError(
                    f"too many failed attempts for {what} {key!r}; retry in {seconds} s",
                    details={"retry_after_seconds": seconds},
                )
                error.headers = {"Retry-After": str(seconds)}
                raise error

    def failed(self, user: str | None, address: str | None) -> None:
        if user:
            self.users.record_failure(user)
        if address:
            self.addresses.record_failure(address)

    def succeeded(self, user: str) -> None:
        self.users.reset(user)
