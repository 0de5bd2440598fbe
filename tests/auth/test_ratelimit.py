"""Failed logins are rate-limited per user name and per client address."""

from __future__ import annotations

import pytest
from auth_helpers import create_user, set_password

from skyshift_core.auth import ratelimit
from skyshift_core.auth.ratelimit import FailureLimiter, LoginLimiter
from skyshift_core.errors import TooManyRequestsError


def attempt(anonymous_api, username: str, password: str) -> int:
    return anonymous_api.post("/api/v1/login", json={"username": username, "password": password}).status_code


def test_user_blocked_after_five_failures(api, anonymous_api):
    create_user(api, "alice")
    set_password(api, "alice", "correct horse")

    codes = [attempt(anonymous_api, "alice", f"guess {index}") for index in range(5)]
    blocked = anonymous_api.post("/api/v1/login", json={"username": "alice", "password": "correct horse"})

    assert codes == [401] * 5
    # Even the right password is refused while the user is blocked, so guessing gains nothing.
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) >= 1
    assert "too many failed attempts for user 'alice'" in blocked.json()["message"]


def test_other_user_not_blocked_by_user_limit(api, anonymous_api):
    create_user(api, "bob")
    set_password(api, "bob", "bob's password")
    for index in range(5):
        attempt(anonymous_api, "alice", f"guess {index}")

    assert attempt(anonymous_api, "bob", "bob's password") == 200


def test_address_blocked_after_twenty_failures(anonymous_api):
    codes = [attempt(anonymous_api, f"user-{index}", "guess") for index in range(20)]

    response = anonymous_api.post("/api/v1/login", json={"username": "someone-new", "password": "guess"})

    assert codes == [401] * 20
    assert response.status_code == 429
    assert "client address '127.0.0.1'" in response.json()["message"]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch):
    """A settable monotonic clock for the limiter module."""
    now = [1000.0]
    monkeypatch.setattr(ratelimit.time, "monotonic", lambda: now[0])
    return now


def test_limiter_window_slides(clock):
    limiter = FailureLimiter(max_failures=2, window_seconds=60)
    limiter.record_failure("alice")
    clock[0] += 30
    limiter.record_failure("alice")

    blocked_for = limiter.retry_after("alice")
    clock[0] += 31  # The first failure is now 61 s old.

    assert blocked_for == pytest.approx(30)
    assert limiter.retry_after("alice") is None


def test_limiter_success_resets_user_not_address(clock):
    limiter = LoginLimiter(per_user=1, per_address=1, window_seconds=60)
    limiter.failed("alice", "10.0.0.1")

    limiter.succeeded("alice")

    limiter.check("alice", None)
    with pytest.raises(TooManyRequestsError) as raised:
        limiter.check("alice", "10.0.0.1")
    assert raised.value.headers == {"Retry-After": "60"}


def test_limiter_rejects_invalid_limits():
    with pytest.raises(ValueError):
        FailureLimiter(max_failures=0, window_seconds=60)
