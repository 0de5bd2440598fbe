"""Invites: single-use, expiring, revocable codes that let a new user register with given Roles.

An invite code reads `ski_<id>.<secret>`. etcd keeps only its SHA-256 digest at
`<root>/_auth/invites/<id>`, with an etcd lease, so the record disappears a while after the invite
expires. Revoking deletes the record. Registering writes the User, the password hash, the
Role bindings, the first token and the invite's `used_by` in one transaction that requires the
invite record to be unchanged since it was checked, so two registrations can never share an invite.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from skyshift_core.auth.passwords import password_path, password_record
from skyshift_core.auth.rbac import Authorizer
from skyshift_core.auth.tokens import SESSION, TokenRecord, add_token
from skyshift_core.errors import (
    AlreadyExistsError,
    ConflictError,
    ForbiddenError,
    InvalidError,
    NotFoundError,
    UnauthorizedError,
)
from skyshift_core.objects import Role, User
from skyshift_core.objects.meta import utc_now
from skyshift_core.store import Store
from skyshift_core.store.auth_records import SecretRecord

INVITE_PREFIX = "ski_"
# The record outlives the invite by this much, so using an expired invite reports "expired" for a while.
_LEASE_GRACE_SECONDS = 24 * 3600
MAX_DESCRIPTION_LENGTH = 200
# Attempts of one registration when a Role it binds changes between reading and writing it.
_REGISTER_ATTEMPTS = 5

PENDING = "Pending"
USED = "Used"
EXPIRED = "Expired"


def invite_path(invite_id: str) -> str:
    return f"invites/{invite_id}"


def _digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def parse_invite(code: str) -> str:
    """Return the invite id that a code names; UnauthorizedError when it is not an invite code."""
    body = code.removeprefix(INVITE_PREFIX) if isinstance(code, str) and code.startswith(INVITE_PREFIX) else ""
    invite_id, _, secret = body.partition(".")
    if not invite_id or not secret or not all(character in "0123456789abcdef" for character in invite_id):
        raise UnauthorizedError(
            "the invite code is not valid: expected ski_<id>.<secret>, as skyshift invite create prints it"
        )
    return invite_id


@dataclass
class InviteRecord:
    id: str
    digest: str
    roles: list[str]
    created_by: str
    created_at: datetime
    expires_at: datetime
    description: str = ""
    used_by: str | None = None
    used_at: datetime | None = None
    mod_revision: int = 0
    lease: int = 0

    def value(self) -> dict:
        return {
            "digest": self.digest,
            "roles": self.roles,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "description": self.description,
            "used_by": self.used_by,
            "used_at": self.used_at.isoformat() if self.used_at else None,
        }

    @classmethod
    def from_record(cls, record: SecretRecord) -> "InviteRecord":
        value = record.value
        return cls(
            id=record.path.rsplit("/", 1)[-1],
            digest=value["digest"],
            roles=list(value.get("roles") or []),
            created_by=value.get("created_by", ""),
            created_at=datetime.fromisoformat(value["created_at"]),
            expires_at=datetime.fromisoformat(value["expires_at"]),
            description=value.get("description", ""),
            used_by=value.get("used_by"),
            used_at=datetime.fromisoformat(value["used_at"]) if value.get("used_at") else None,
            mod_revision=record.mod_revision,
            lease=record.lease,
        )

    def state(self) -> str:
        if self.used_by:
            return USED
        if utc_now() >= self.expires_at:
            return EXPIRED
        return PENDING

    def public(self) -> dict:
        """Return the fields a client may see: everything but the digest."""
        return {
            "kind": "Invite",
            "id": self.id,
            "roles": self.roles,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "description": self.description,
            "state": self.state(),
            "used_by": self.used_by,
            "used_at": self.used_at.isoformat() if self.used_at else None,
        }


async def roles_named(store: Store, names: list[str]) -> list[Role]:
    """Return the Roles named; NotFoundError names the first one that does not exist."""
    return [await store.get(Role, None, name) for name in names]


async def create_invite(
    store: Store, creator: str, roles: list[str], lifetime_seconds: int, description: str = ""
) -> tuple[str, InviteRecord]:
    """Store a new invite and return its code (shown once) and record; the caller has checked permissions."""
    if not roles:
        raise InvalidError("an invite needs at least one role: pass --role NAME")
    if len(description) > MAX_DESCRIPTION_LENGTH:
        raise InvalidError(
            f"invite description is {len(description)} characters; the limit is {MAX_DESCRIPTION_LENGTH}"
        )
    invite_id = secrets.token_hex(8)
    code = f"{INVITE_PREFIX}{invite_id}.{secrets.token_hex(32)}"
    now = utc_now()
    record = InviteRecord(
        invite_id,
        _digest(code),
        sorted(set(roles)),
        creator,
        now,
        now + timedelta(seconds=lifetime_seconds),
        description,
    )
    lease = await store.grant_secret_lease(lifetime_seconds + _LEASE_GRACE_SECONDS)
    transaction = store.transaction()
    transaction.require_absent(invite_path(invite_id))
    transaction.put_secret(invite_path(invite_id), record.value(), lease=lease)
    if await transaction.commit() is None:
        raise AlreadyExistsError(f"invite id {invite_id} is already taken; create the invite again")
    return code, record


async def get_invite(store: Store, invite_id: str) -> InviteRecord:
    stored = await store.get_secret(invite_path(invite_id))
    if stored is None:
        raise NotFoundError(
            f"invite '{invite_id}' not found: it was revoked, expired a day ago or more, or never existed"
        )
    return InviteRecord.from_record(stored)


async def list_invites(store: Store) -> list[InviteRecord]:
    return [InviteRecord.from_record(record) for record in await store.list_secrets("invites")]


async def revoke_invite(store: Store, invite_id: str) -> InviteRecord:
    """Delete a pending or expired invite. A used invite stays, as the record of who registered with
    it: revoking it would change nothing, since it cannot be used again."""
    record = await get_invite(store, invite_id)
    if record.used_by:
        raise ConflictError(
            f"invite {invite_id} was already used, by '{record.used_by}' at {record.used_at.isoformat()}, so "
            f"revoking it changes nothing; to take the access away, unbind or delete the user: "
            f"skyshift user delete {record.used_by}"
        )
    transaction = store.transaction()
    transaction.delete_secret(invite_path(invite_id))
    transaction.require_revision(invite_path(invite_id), record.mod_revision)
    if await transaction.commit() is None:
        raise ConflictError(
            f"invite {invite_id} changed while it was revoked (it may have just been used); list the invites again"
        )
    return record


async def _valid_invite(store: Store, code: str) -> InviteRecord:
    invite_id = parse_invite(code)
    stored = await store.get_secret(invite_path(invite_id))
    record = InviteRecord.from_record(stored) if stored is not None else None
    if record is None or not hmac.compare_digest(record.digest, _digest(code)):
        raise UnauthorizedError("the invite code is not valid: it was revoked, has expired, or never existed")
    if record.used_by:
        raise UnauthorizedError(
            f"the invite was already used (by '{record.used_by}' at {record.used_at.isoformat()}); "
            "each invite registers one user: ask for a new one"
        )
    if record.state() == EXPIRED:
        raise UnauthorizedError(f"the invite expired at {record.expires_at.isoformat()}; ask for a new one")
    return record


async def redeem_invite(
    store: Store,
    authorizer: Authorizer,
    code: str,
    user: User,
    password_hash: str,
    token_lifetime_seconds: int,
) -> tuple[User, str, TokenRecord]:
    """Register `user` with the invite's Roles; return the stored User, its first token and the token's record.

    The invite's creator must still hold every permission of those Roles, so an invite cannot
    outlast its creator's rights.
    """
    name = user.metadata.name
    for _ in range(_REGISTER_ATTEMPTS):
        invite = await _valid_invite(store, code)
        roles = await roles_named(store, invite.roles)
        authorizer.invalidate()
        granted = [rule for role in roles for rule in role.spec.rules]
        try:
            await authorizer.check_grant(invite.created_by, granted, f"grant the Roles {', '.join(invite.roles)}")
        except ForbiddenError as error:
            raise ForbiddenError(
                f"the invite's creator '{invite.created_by}' no longer holds the permissions of its Roles: "
                f"{error.message}"
            ) from error

        transaction = store.transaction()
        created = transaction.create(user)
        transaction.put_secret(password_path(name), password_record(password_hash))
        used = InviteRecord(**{**invite.__dict__, "used_by": name, "used_at": utc_now()})
        transaction.require_revision(invite_path(invite.id), invite.mod_revision)
        transaction.put_secret(invite_path(invite.id), used.value(), lease=invite.lease)
        for role in roles:
            bound = role.model_copy(deep=True)
            if name not in bound.spec.users:
                bound.spec.users.append(name)
                bound.metadata.generation = role.metadata.generation + 1
                transaction.replace(bound, int(role.metadata.resource_version))
        # A binding that names the user before it existed would hand its Role to the first user to
        # register that name: the new user gets the invite's Roles and nothing more.
        await store.unbind_everywhere(transaction, name, keep=frozenset(role.metadata.name for role in roles))
        token, token_record = await add_token(
            transaction, store, name, SESSION, token_lifetime_seconds, require_user=False
        )
        if await transaction.commit() is not None:
            authorizer.invalidate()
            return created, token, token_record
        try:
            await store.get(User, None, name)
        except NotFoundError:
            continue  # The invite or a Role changed meanwhile: check everything again.
        raise AlreadyExistsError(f"user '{name}' already exists; choose another user name")
    raise AlreadyExistsError(f"registering user '{name}' kept conflicting with concurrent changes to its Roles; retry")
