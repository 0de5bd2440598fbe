"""The API server's authentication and authorization state, and the checks its routes call.

`create_app` puts one `AuthService` on `app.state.auth`. Every route handler calls `authorize`
before it reads its body, so a denied request gets 403 rather than a validation error, and
`skyshift_core.auth.middleware` has already rejected requests without a valid token.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request

from skyshift_core.auth.audit import AuditLog
from skyshift_core.auth.rbac import Attributes, Authorizer, limit_rules
from skyshift_core.auth.ratelimit import LoginLimiter
from skyshift_core.auth.settings import AuthSettings
from skyshift_core.auth.tokens import Identity, TokenAuthenticator
from skyshift_core.errors import ForbiddenError, InvalidError, NotFoundError, UnauthorizedError
from skyshift_core.objects import Object, Role, User
from skyshift_core.store import Store

class AuthService:
    def __init__(self, store: Store, settings: AuthSettings):
        self.store = store
        self.settings = settings
        self.tokens = TokenAuthenticator(store, settings.cache_seconds)
        self.authorizer = Authorizer(store, settings.cache_seconds)
        self.limiter = LoginLimiter(
            settings.login_failures_per_user,
            settings.login_failures_per_address,
            settings.login_failure_window_seconds,
        )
        self.audit = AuditLog(settings.audit_log)

    async def authenticate(self, authorization: str | None) -> Identity:
        """Return the identity an `Authorization: Bearer <token>` header proves; UnauthorizedError otherwise."""
        if not authorization:
            raise UnauthorizedError(
                "authentication required: send Authorization: Bearer <token>; get a token with: skyshift login"
            )
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and not token.strip():
            raise UnauthorizedError(
                "the Authorization header has no token after 'Bearer'; get one with: skyshift login"
            )
        if scheme.lower() != "bearer":
            raise UnauthorizedError(
                f"unsupported Authorization scheme {scheme!r}: expected 'Bearer <token>'; "
                "get a token with: skyshift login"
            )
        return await self.tokens.authenticate(token.strip())

    def close(self) -> None:
        self.audit.close()


def auth_of(request: Request) -> AuthService:
    return request.app.state.auth


def identity_of(request: Request) -> Identity:
    identity = getattr(request.state, "identity", None)
    if identity is None:
        raise UnauthorizedError("authentication required: send Authorization: Bearer <token>")
    return identity


async def authorize(
    request: Request, verb: str, resource: str, namespace: str | None = None, name: str | None = None
) -> Identity:
    """Raise ForbiddenError unless the caller may do `verb` on `resource` in `namespace`; return the caller.

    The attributes are kept on the request for the audit log.
    """
    identity = identity_of(request)
    attributes = Attributes(verb, resource, namespace, name)
    request.state.auth_attributes = attributes
    try:
        await auth_of(request).authorizer.check(identity.user, attributes)
    except ForbiddenError as error:
        request.state.auth_error = error.message
        raise
    return identity


def watch_recheck(request: Request) -> Callable[[], Awaitable[None]]:
    """Return the check that a watch runs again while it streams: the request's token still proves
    a user, and that user may still do what the request was authorized for."""
    auth = auth_of(request)
    authorization = request.headers.get("authorization")
    attributes = request.state.auth_attributes

    async def recheck() -> None:
        identity = await auth.authenticate(authorization)
        await auth.authorizer.check(identity.user, attributes)

    return recheck


def requires(verb: str, resource: str, name_parameter: str = "name"):
    """Return a FastAPI dependency that authorizes `verb` on `resource`, with the namespace and name
    from the path. Dependencies run before FastAPI validates a request body, so a caller without the
    right gets 403 rather than a validation error."""

    async def dependency(request: Request) -> None:
        params = request.path_params
        await authorize(request, verb, resource, params.get("namespace"), params.get(name_parameter))

    return dependency


async def check_grant(request: Request, rules: list, what: str) -> None:
    """Raise ForbiddenError unless the caller holds every permission in `rules` (see `rbac.uncovered`)."""
    identity = identity_of(request)
    try:
        await auth_of(request).authorizer.check_grant(identity.user, rules, what)
    except ForbiddenError as error:
        request.state.auth_error = error.message
        raise


async def check_role_write(request: Request, role: Role, current: Role | None) -> Role:
    """Reject a Role create or update that would hand out permissions the caller does not hold.

    Writing rules, or adding users to the binding, requires holding every permission in the new
    rules. Binding a user in one namespace alone requires holding the rules as limited to that
    namespace. A write that only removes users or changes labels needs no such check. Such a
    write, and one that binds in a namespace, is pinned to the version it was compared with
    (through its resource_version), so it cannot overwrite a concurrent change to the rules with
    rules the caller may not grant.
    """
    added = sorted(set(role.spec.users) - set(current.spec.users if current is not None else ()))
    added_in = _namespace_bindings(role) - (_namespace_bindings(current) if current is not None else set())
    await _check_users_exist(request, role, added, "spec.users")
    await _check_users_exist(request, role, sorted({user for _, user in added_in}), "spec.namespace_users")
    if current is None or role.spec.rules != current.spec.rules or added:
        await check_grant(request, role.spec.rules, f"write Role '{role.metadata.name}'")
        return role
    for namespace in sorted({namespace for namespace, _ in added_in}):
        rules = limit_rules(role.spec.rules, namespace)
        await check_grant(request, rules, f"bind Role '{role.metadata.name}' in namespace '{namespace}'")
    if role.metadata.resource_version is None:
        role = role.model_copy(deep=True)
        role.metadata.resource_version = current.metadata.resource_version
    return role


def _namespace_bindings(role: Role) -> set[tuple[str, str]]:
    return {(namespace, user) for namespace, users in role.spec.namespace_users.items() for user in users}


async def _check_users_exist(request: Request, role: Role, added: list[str], field: str) -> None:
    """Reject binding users that do not exist: the binding would go to the first user to register the name."""
    store = auth_of(request).store
    missing = []
    for name in added:
        try:
            await store.get(User, None, name)
        except NotFoundError:
            missing.append(name)
    if missing:
        names = ", ".join(repr(name) for name in missing)
        raise InvalidError(
            f"invalid {field} of Role '{role.metadata.name}': no user named {names}; a binding to a name "
            "that no user holds would go to the first user to register that name. Check the spelling "
            "(skyshift get users), or invite the user with this Role: skyshift invite create --role "
            + role.metadata.name
        )


def object_written(request: Request, model: type[Object], name: str) -> None:
    """Apply a successful write to this server's caches: Roles and Users change who may do what."""
    auth = auth_of(request)
    if model is Role or model is User:
        auth.authorizer.invalidate()
    if model is User and request.method == "DELETE":
        auth.tokens.forget_user(name)
