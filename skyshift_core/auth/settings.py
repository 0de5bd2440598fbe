"""Security settings of an API server, in a module of their own so that the CLI can read their
defaults without importing the server's dependencies."""

from __future__ import annotations

from dataclasses import dataclass

DAY_SECONDS = 24 * 3600


@dataclass
class AuthSettings:
    """Security settings of one API server; `ApiSettings` carries them."""

    # Lifetime of a token from `login` when the request names none, and the longest one it may name.
    token_lifetime_seconds: int = DAY_SECONDS
    max_token_lifetime_seconds: int = 30 * DAY_SECONDS
    invite_lifetime_seconds: int = 7 * DAY_SECONDS
    max_invite_lifetime_seconds: int = 30 * DAY_SECONDS
    # Seconds a validated token or the Role list is reused before etcd is read again.
    cache_seconds: float = 2.0
    login_failures_per_user: int = 5
    login_failures_per_address: int = 20
    login_failure_window_seconds: float = 300.0
    audit_log: str | None = None
