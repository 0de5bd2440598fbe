"""Bearer tokens: opaque random strings of which etcd stores only the SHA-256 digest.

A token reads `sks_<user>.<id>.<secret>`: the user name and the token id locate its record at
`<root>/_auth/tokens/<user>/<id>`, and the 256-bit secret makes it unguessable. A fast digest is
enough because the secret has full entropy, unlike a password. Session tokens (from `login`)
expire; service tokens (for controllers and automation) may live until revoked. A token whose
record is gone (logout, revocation, its user deleted) is rejected.

Each API server caches validated records for `cache_seconds`; a revocation through one server
takes effect there at once and on other servers within that time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from skyshift_core.errors import InvalidError, NotFoundError, UnauthorizedError
from skyshift_core.objects import User
from skyshift_core.objects.meta import utc_now, validate_name
from skyshift_core.store import Store
from skyshift_core.store.auth_records import SecretRecord, Transaction

TOKEN_PREFIX = "sks_"
SESSION = "session"
SERVICE = "service"
TOKEN_KINDS = (SESSION, SERVICE)
# Records of expiring tokens carry an etcd lease this much longer than the token's lifetime, so
# etcd deletes them on its own shortly after they expire.
_LEASE_GRACE_SECONDS = 60
# Validated tokens kept in one API server's cache; past this the oldest half is dropped.
_CACHE_ENTRIES = 10000
MAX_DESCRIPTION_LENGTH = 200


def token_path(user: str, token_id: str) -> str:
    return f"tokens/{user}/{token_id}"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_token(token: str) -> tuple[str, str]:
    """Return the (user, token id) that a token names; UnauthorizedError when it is not a SkyShift token."""
    body = token.removeprefix(TOKEN_PREFIX) if token.startswith(TOKEN_PREFIX) else None
    parts = body.split(".") if body else []
    if len(parts) != 3 or not all(parts):
        raise UnauthorizedError(
            "the bearer token is not a SkyShift token (expected sks_<user>.<id>.<secret>); log in with: skyshift login"
        )
    user, token_id, _ = parts
    try:
        validate_name(user, "user name")
    except ValueError as error:
        raise UnauthorizedError(f"the bearer token names an invalid user: {error}") from error
    if not all(character in "0123456789abcdef" for character in token_id):
        raise UnauthorizedError("the bearer token has an invalid id; log in again with: skyshift login")
    return user, token_id


@dataclass(frozen=True)
class Identity:
    """The sender of a request: the user and the token that proved it."""

    user: str
    token_id: str
    token_kind: str
    expires_at: datetime | None


@dataclass
class TokenRecord:
    """A token's stored record; `digest` identifies the token and is never sent to clients."""

    id: str
    user: str
    kind: str
    digest: str
    created_at: datetime
    expires_at: datetime | None
    description: str = ""

    def value(self) -> dict:
        return {
            "kind": self.kind,
            "digest": self.digest,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "description": self.description,
        }

    @classmethod
    def from_record(cls, record: SecretRecord) -> "TokenRecord":
        _, user, token_id = record.path.split("/")
        value = record.value
        expires = value.get("expires_at")
        return cls(
            id=token_id,
            user=user,
            kind=value.get("kind", SESSION),
            digest=value.get("digest", ""),
            created_at=datetime.fromisoformat(value["created_at"]),
            expires_at=datetime.fromisoformat(expires) if expires else None,
            description=value.get("description", ""),
        )

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and (now or utc_now()) >= self.expires_at

    def public(self) -> dict:
        """Return the fields a client may see: everything but the digest."""
        return {
            "id": self.id,
            "user": self.user,
            "type": self.kind,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "description": self.description,
        }


async def add_token(
    transaction: Transaction,
    store: Store,
    user: str,
    kind: str,
    lifetime_seconds: int | None,
    description: str = "",
    *,
    require_user: bool = True,
) -> tuple[str, TokenRecord]:
    """Add a new token for `user` to `transaction`; return the token (shown once) and its record.

    The transaction requires that the User exists, unless `require_user` is False because the same
    transaction creates it. A token with a lifetime gets an etcd lease, so its record disappears
    after it expires.
    """
    if kind not in TOKEN_KINDS:
        raise InvalidError(f"invalid token kind {kind!r}: expected one of {', '.join(TOKEN_KINDS)}")
    if lifetime_seconds is not None and lifetime_seconds <= 0:
        raise InvalidError(f"invalid token lifetime {lifetime_seconds}: expected a positive number of seconds")
    if len(description) > MAX_DESCRIPTION_LENGTH:
        raise InvalidError(f"token description is {len(description)} characters; the limit is {MAX_DESCRIPTION_LENGTH}")
    token_id = secrets.token_hex(8)
    token = f"{TOKEN_PREFIX}{user}.{token_id}.{secrets.token_hex(32)}"
    now = utc_now()
    expires_at = now + timedelta(seconds=lifetime_seconds) if lifetime_seconds is not None else None
    record = TokenRecord(token_id, user, kind, digest(token), now, expires_at, description)
    lease = 0
    if lifetime_seconds is not None:
        lease = await store.grant_secret_lease(lifetime_seconds + _LEASE_GRACE_SECONDS)
    if require_user:
        transaction.require_object(User, None, user)
    transaction.put_secret(token_path(user, token_id), record.value(), lease=lease)
    return token, record


async def issue_token(
    store: Store, user: str, kind: str, lifetime_seconds: int | None, description: str = ""
) -> tuple[str, TokenRecord]:
    """Create a token for an existing user in its own transaction; NotFoundError when the user does not exist."""
    transaction = store.transaction()
    token, record = await add_token(transaction, store, user, kind, lifetime_seconds, description)
    if await transaction.commit() is None:
        raise NotFoundError(f"user '{user}' not found; create it first: skyshift create user {user}")
    return token, record


class TokenAuthenticator:
    """Validates bearer tokens against their records, with a short per-process cache."""

    def __init__(self, store: Store, cache_seconds: float = 2.0):
        self.store = store
        self.cache_seconds = cache_seconds
        # digest -> (record, monotonic time it was read)
        self._cache: dict[str, tuple[TokenRecord, float]] = {}

    async def authenticate(self, token: str) -> Identity:
        """Return the identity that a token proves; raise UnauthorizedError with the reason when it proves none."""
        user, token_id = parse_token(token)
        token_digest = digest(token)
        record = self._cached(token_digest)
        if record is None:
            stored = await self.store.get_secret(token_path(user, token_id))
            record = TokenRecord.from_record(stored) if stored is not None else None
            if record is None or not hmac.compare_digest(record.digest, token_digest):
                raise UnauthorizedError(
                    "the bearer token is not valid: it was revoked, its user was deleted, or it never existed; "
                    "log in again with: skyshift login"
                )
            self._remember(token_digest, record)
        if record.expired():
            raise UnauthorizedError(
                f"the bearer token expired at {record.expires_at.isoformat()}; log in again with: skyshift login"
            )
        return Identity(record.user, record.id, record.kind, record.expires_at)

    def _cached(self, token_digest: str) -> TokenRecord | None:
        entry = self._cache.get(token_digest)
        if entry is None:
            return None
        record, read_at = entry
        if time.monotonic() - read_at > self.cache_seconds:
            del self._cache[token_digest]
            return None
        return record

    def _remember(self, token_digest: str, record: TokenRecord) -> None:
        if self.cache_seconds <= 0:
            return
        if len(self._cache) >= _CACHE_ENTRIES:
            for key in list(self._cache)[: _CACHE_ENTRIES // 2]:
                del self._cache[key]
        self._cache[token_digest] = (record, time.monotonic())

    def forget_user(self, user: str, token_id: str | None = None) -> None:
        """Drop cached tokens of `user` (only `token_id` when given) after a revocation."""
        for key, (record, _) in list(self._cache.items()):
            if record.user == user and token_id in (None, record.id):
                del self._cache[key]

    async def list_tokens(self, user: str) -> list[TokenRecord]:
        return [TokenRecord.from_record(record) for record in await self.store.list_secrets(f"tokens/{user}")]

    async def revoke(self, user: str, token_id: str) -> TokenRecord:
        """Delete one token's record; NotFoundError when it does not exist (or has already been revoked)."""
        stored = await self.store.get_secret(token_path(user, token_id))
        if stored is None:
            raise NotFoundError(f"token '{token_id}' of user '{user}' not found; list tokens with: skyshift token list")
        transaction = self.store.transaction()
        transaction.delete_secret(token_path(user, token_id))
        await transaction.commit()
        self.forget_user(user, token_id)
        return TokenRecord.from_record(stored)
