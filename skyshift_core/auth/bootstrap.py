"""First-time setup of authentication in an etcd: built-in Roles, the first administrator and the
controller manager's service identity. `skyshift up`, `skyshift bootstrap` and the test fixtures
call it with direct access to etcd, which is what makes it trustworthy: whoever can write to etcd
already controls SkyShift.

Everything here creates what is missing and keeps what exists, so running it again is safe and
keeps an administrator's changes to the built-in Roles. The one exception is the rules of the
controller manager's Role, which always become those of the installed version.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from skyshift_core.auth.passwords import generate_password, hash_password, password_path, password_record
from skyshift_core.auth.rbac import (
    ADMIN_ROLE,
    BUILTIN_ROLES,
    CONTROLLER_MANAGER_ROLE,
    CONTROLLER_MANAGER_RULES,
    CONTROLLER_MANAGER_USER,
)
from skyshift_core.auth.tokens import SERVICE, SESSION, TokenAuthenticator, issue_token
from skyshift_core.errors import NotFoundError, SkyShiftError, UnauthorizedError
from skyshift_core.objects import PolicyRule, Role, User
from skyshift_core.store import Store

logger = logging.getLogger(__name__)

T = TypeVar("T")

ADMIN_USER = "admin"
# Present once the built-in Roles were created; its absence is what allows creating them.
BUILTIN_ROLES_MARKER = "bootstrap/builtin-roles"
SERVICE_ACCOUNT_LABEL = "skyshift.io/service-account"
DEFAULT_ADMIN_TOKEN_LIFETIME = 24 * 3600


async def ensure_builtin_roles(store: Store) -> list[str]:
    """Create the built-in Roles the first time this runs on an etcd prefix; return the names created.

    The marker record and the Roles are written in one transaction. Later calls find the marker and
    write nothing, so a Role an administrator changed or deleted stays that way. A Role that already
    exists by that name when the marker is first written is kept as it is.
    """
    if await store.get_secret(BUILTIN_ROLES_MARKER) is not None:
        return []
    transaction = store.transaction()
    transaction.require_absent(BUILTIN_ROLES_MARKER)
    created = []
    for name, rules in BUILTIN_ROLES.items():
        try:
            await store.get(Role, None, name)
        except NotFoundError:
            transaction.create(Role(metadata={"name": name}, spec={"rules": rules}))
            created.append(name)
    transaction.put_secret(BUILTIN_ROLES_MARKER, {"roles": sorted(BUILTIN_ROLES)})
    if await transaction.commit() is None:
        return []  # Another process created them at the same moment.
    if created:
        logger.info("Created the built-in Roles %s", ", ".join(created))
    return created


async def ensure_role(store: Store, name: str, rules: list[PolicyRule]) -> Role:
    """Return the Role `name` with exactly `rules`: create it, or replace the rules of the stored one
    (keeping its users), so a newer controller manager gets the rights its new controllers need."""
    for _ in range(5):
        try:
            role = await store.get(Role, None, name)
        except NotFoundError:
            transaction = store.transaction()
            created = transaction.create(Role(metadata={"name": name}, spec={"rules": rules}))
            if await transaction.commit() is not None:
                return created
            continue
        if role.spec.rules == rules:
            return role
        updated = role.model_copy(deep=True)
        updated.spec.rules = list(rules)
        updated.metadata.generation = role.metadata.generation + 1
        transaction = store.transaction()
        transaction.replace(updated, int(role.metadata.resource_version))
        if await transaction.commit() is not None:
            logger.info("Updated the rules of Role %s", name)
            return updated
    raise SkyShiftError(f"could not create or update Role '{name}': it kept changing; retry")


async def ensure_user(store: Store, name: str, *, password: str | None = None, labels: dict | None = None) -> bool:
    """Create the User `name` (with a password when given) unless it exists; return True when created."""
    try:
        await store.get(User, None, name)
        return False
    except NotFoundError:
        pass
    transaction = store.transaction()
    transaction.create(User(metadata={"name": name, "labels": labels or {}}))
    if password is not None:
        transaction.put_secret(password_path(name), password_record(await hash_password(password)))
    return await transaction.commit() is not None


async def bind(store: Store, role_name: str, user: str) -> None:
    """Add `user` to the Role's binding unless it is there; NotFoundError when the Role is missing."""
    for _ in range(5):
        role = await store.get(Role, None, role_name)
        if user in role.spec.users:
            return
        bound = role.model_copy(deep=True)
        bound.spec.users.append(user)
        bound.metadata.generation = role.metadata.generation + 1
        transaction = store.transaction()
        transaction.replace(bound, int(role.metadata.resource_version))
        if await transaction.commit() is not None:
            return
    raise SkyShiftError(f"could not bind user '{user}' to Role '{role_name}': the Role kept changing; retry")


async def token_is_valid(store: Store, token: str | None, user: str) -> bool:
    """True when `token` is a current, unexpired token of `user`."""
    if not token:
        return False
    try:
        identity = await TokenAuthenticator(store, cache_seconds=0).authenticate(token)
    except UnauthorizedError:
        return False
    return identity.user == user


@dataclass
class BootstrapResult:
    admin_user: str
    # Set only when this run created the administrator; it is not stored anywhere else in clear.
    admin_password: str | None
    admin_token: str
    controller_manager_token: str
    created_roles: list[str]


async def bootstrap(
    store: Store,
    *,
    admin_user: str = ADMIN_USER,
    admin_token: str | None = None,
    controller_manager_token: str | None = None,
    admin_token_lifetime: int = DEFAULT_ADMIN_TOKEN_LIFETIME,
) -> BootstrapResult:
    """Create the built-in Roles, an administrator with a random password and the controller
    manager's identity with the least rights it needs, unless they exist.

    The tokens passed in are returned again while they are valid. Otherwise new ones are issued: a
    session token for the administrator, and for the controller manager a service token that stays
    valid until revoked.
    """
    created_roles = await ensure_builtin_roles(store)

    password = generate_password()
    if not await ensure_user(store, admin_user, password=password):
        password = None
    await bind(store, ADMIN_ROLE, admin_user)

    if not await token_is_valid(store, admin_token, admin_user):
        admin_token, _ = await issue_token(store, admin_user, SESSION, admin_token_lifetime, "skyshift bootstrap")
    if not await token_is_valid(store, controller_manager_token, CONTROLLER_MANAGER_USER):
        controller_manager_token = await bootstrap_controller_manager_token(store)
    return BootstrapResult(admin_user, password, admin_token, controller_manager_token, created_roles)


async def bootstrap_admin_token(
    store: Store, user: str = ADMIN_USER, lifetime: int = DEFAULT_ADMIN_TOKEN_LIFETIME
) -> str:
    """Create the built-in Roles and an administrator without a password, and return a token of it.

    Test fixtures use it because hashing a password for every test would be slow."""
    await ensure_builtin_roles(store)
    await ensure_user(store, user)
    await bind(store, ADMIN_ROLE, user)
    token, _ = await issue_token(store, user, SESSION, lifetime, "test fixture")
    return token


async def bootstrap_controller_manager_token(store: Store) -> str:
    """Create the controller manager's Role and User unless they exist and return a new service token of it."""
    await ensure_role(store, CONTROLLER_MANAGER_ROLE, CONTROLLER_MANAGER_RULES)
    await ensure_user(store, CONTROLLER_MANAGER_USER, labels={SERVICE_ACCOUNT_LABEL: "true"})
    await bind(store, CONTROLLER_MANAGER_ROLE, CONTROLLER_MANAGER_USER)
    token, _ = await issue_token(store, CONTROLLER_MANAGER_USER, SERVICE, None, "controller manager")
    return token


def run_sync(operation: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from synchronous code, in a thread with its own event loop, so it
    also works when the caller's thread already runs one (pytest fixtures of async tests)."""
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["value"] = asyncio.run(operation())
        except BaseException as error:  # Re-raised in the caller's thread below.
            outcome["error"] = error

    thread = threading.Thread(target=target, name="skyshift-bootstrap")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


def write_private_file(path: Path, text: str) -> None:
    """Write `text` to `path` atomically with mode 0600, so no other user can ever read it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(descriptor, 0o600)
        os.write(descriptor, text.encode())
    finally:
        os.close(descriptor)
    os.replace(temporary, path)
