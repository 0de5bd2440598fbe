"""Password hashing with Argon2id (argon2-cffi), and the stored password record of each user.

argon2-cffi's default parameters are RFC 9106's second recommended profile (t=3, 64 MiB, p=4),
about 0.16 s per hash on one core of the development machine. Hashing and verifying run in a
worker thread so a login never blocks the API server's event loop. Hashes are stored under
`<root>/_auth/passwords/<user>` and never leave the API server.
"""

from __future__ import annotations

import asyncio
import functools
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from skyshift_core.errors import InvalidError
from skyshift_core.objects.meta import utc_now
from skyshift_core.store import Store

MIN_PASSWORD_LENGTH = 8
# Long enough for any passphrase, short enough that hashing one request body stays cheap.
MAX_PASSWORD_LENGTH = 1024

_hasher = PasswordHasher()


@functools.cache
def _unknown_user_hash() -> str:
    """Return the hash verified when the user does not exist, so an unknown name takes as long to
    reject as a wrong password. Hashing at import would cost every CLI command about 0.15 s, so the
    API server makes it at start-up (`warm_up`) instead."""
    return _hasher.hash(secrets.token_urlsafe(16))


def warm_up() -> None:
    """Make the unknown-user hash now, so that the first login of an unknown user is not slower than later ones."""
    _unknown_user_hash()


def password_path(user: str) -> str:
    return f"passwords/{user}"


def validate_password(password: str) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        length = len(password) if isinstance(password, str) else 0
        raise InvalidError(
            f"invalid password: expected {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters, got {length}"
        )
    if not password.strip():
        raise InvalidError("invalid password: it is only whitespace; choose one with other characters too")
    return password


def generate_password() -> str:
    """Return a random password of 24 URL-safe characters (144 bits)."""
    return secrets.token_urlsafe(18)


async def hash_password(password: str) -> str:
    validate_password(password)
    return await asyncio.to_thread(_hasher.hash, password)


def password_record(password_hash: str) -> dict:
    return {"hash": password_hash, "updated_at": utc_now().isoformat()}


async def check_password(store: Store, user: str, password: str) -> bool:
    """Return True when `password` is the user's; False for a wrong password, an unknown user or a
    user without a password. Each case costs one Argon2 verification."""
    record = await store.get_secret(password_path(user))
    stored = record.value.get("hash") if record is not None else None
    candidate = stored if isinstance(stored, str) else await asyncio.to_thread(_unknown_user_hash)
    try:
        matches = await asyncio.to_thread(_hasher.verify, candidate, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    return matches and candidate is stored
