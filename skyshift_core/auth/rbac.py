"""Role-based access control: which requests a user's Roles allow, and the privilege-escalation check.

A Role's rules allow verbs on resources in namespaces; the users named in `Role.spec.users` hold
them (that list is the role binding). Matching, for one request:

- verbs: `*` or the verb (get, list, watch, create, update, patch, delete).
- resources: `*` (everything, subresources included), a plural (`jobs`, the objects only),
  `jobs/status` (one subresource), `jobs/*` (every subresource of jobs) or `*/status`.
  Endpoints that are no kind have resource names of their own: `metrics`, `leases`, `invites`,
  `users/password`, `users/tokens`.
- namespaces: `*` or a namespace name. A request on a cluster-scoped kind, or a list or watch
  across all namespaces, matches only rules whose namespaces contain `*`.

Nothing denies: a request is allowed when any rule of any of the user's Roles allows it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from skyshift_core.errors import ForbiddenError
from skyshift_core.objects import PolicyRule, Role
from skyshift_core.objects.misc import VERBS
from skyshift_core.store import Store

ALL = "*"
ADMIN_ROLE = "admin"
EDITOR_ROLE = "editor"
VIEWER_ROLE = "viewer"
CONTROLLER_MANAGER_ROLE = "skyshift-controller-manager"
CONTROLLER_MANAGER_USER = "skyshift-controller-manager"

READ_VERBS = ["get", "list", "watch"]
WRITE_VERBS = ["create", "update", "patch", "delete"]
# Kinds and subresources that ordinary users read; editors also write the kinds marked editable.
_READABLE = [
    "jobs", "jobs/status", "jobs/logs", "jobs/explain", "services", "services/status", "endpoints",
    "endpoints/status", "filterpolicies", "events", "clusters", "clusters/status", "links", "links/status",
    "namespaces",
]  # fmt: skip
_EDITABLE = ["jobs", "services", "endpoints", "filterpolicies", "events"]

# Created once, when the API server first starts on an etcd (or by `skyshift bootstrap`), and never
# written again, so an administrator's changes to them survive restarts.
BUILTIN_ROLES: dict[str, list[PolicyRule]] = {
    ADMIN_ROLE: [PolicyRule(verbs=[ALL], resources=[ALL], namespaces=[ALL])],
    EDITOR_ROLE: [
        PolicyRule(verbs=READ_VERBS, resources=_READABLE, namespaces=[ALL]),
        PolicyRule(verbs=WRITE_VERBS, resources=_EDITABLE, namespaces=[ALL]),
    ],
    VIEWER_ROLE: [PolicyRule(verbs=READ_VERBS, resources=_READABLE, namespaces=[ALL])],
}

# Rules of the controller manager, for its work and nothing more: informers on Jobs, Clusters,
# Services and FilterPolicies, status writes from the scheduler, job status controller and skylets
# (which also record where Services are exposed), Events, and its election lease. Bootstrapping
# brings the stored Role up to these rules, unlike the built-in Roles above.
CONTROLLER_MANAGER_RULES = [
    PolicyRule(verbs=READ_VERBS, resources=["jobs", "clusters", "services"], namespaces=[ALL]),
    # Clusters themselves only for their cleanup finalizer, which skylets add and remove.
    PolicyRule(verbs=["patch"], resources=["clusters"], namespaces=[ALL]),
    PolicyRule(
        verbs=["get", "update", "patch"],
        resources=["jobs/status", "clusters/status", "services/status"],
        namespaces=[ALL],
    ),
    PolicyRule(verbs=["list", "watch"], resources=["filterpolicies"], namespaces=[ALL]),
    PolicyRule(verbs=["get", "create", "patch"], resources=["events"], namespaces=[ALL]),
    PolicyRule(verbs=[ALL], resources=["leases"], namespaces=[ALL]),
]


@dataclass(frozen=True)
class Attributes:
    """The attributes of a request: `verb` on `resource` in `namespace` (None: cluster-scoped or all namespaces)."""

    verb: str
    resource: str
    namespace: str | None = None
    name: str | None = None

    def describe(self) -> str:
        where = f"in namespace '{self.namespace}'" if self.namespace else "across all namespaces (or cluster-scoped)"
        target = f" '{self.name}'" if self.name else ""
        return f"{self.verb} {self.resource}{target} {where}"


def resource_matches(pattern: str, resource: str) -> bool:
    """True when a rule's resource pattern matches a request's resource (see the module doc)."""
    if pattern in (ALL, resource):
        return True
    pattern_kind, slash, pattern_sub = pattern.partition("/")
    kind, has_sub, sub = resource.partition("/")
    if not slash or not has_sub:
        return False
    return pattern_kind in (ALL, kind) and pattern_sub in (ALL, sub)


def resource_covers(held: str, granted: str) -> bool:
    """True when every resource that pattern `granted` matches is matched by pattern `held`."""
    if held in (ALL, granted):
        return True
    if "/" not in held or "/" not in granted:
        return False
    held_kind, held_sub = held.split("/", 1)
    granted_kind, granted_sub = granted.split("/", 1)
    return held_kind in (ALL, granted_kind) and held_sub in (ALL, granted_sub)


def _namespace_matches(namespaces: list[str], namespace: str | None) -> bool:
    if ALL in namespaces:
        return True
    return namespace is not None and namespace in namespaces


def rule_allows(rule: PolicyRule, attributes: Attributes) -> bool:
    return (
        (ALL in rule.verbs or attributes.verb in rule.verbs)
        and any(resource_matches(pattern, attributes.resource) for pattern in rule.resources)
        and _namespace_matches(rule.namespaces, attributes.namespace)
    )


def rules_allow(rules: list[PolicyRule], attributes: Attributes) -> bool:
    return any(rule_allows(rule, attributes) for rule in rules)


def uncovered(held: list[PolicyRule], granted: list[PolicyRule]) -> list[str]:
    """Return each (verb, resource, namespace) of `granted` that no rule of `held` covers, as text.

    Granting a Role, binding a user to it or writing its rules is allowed only when this is empty,
    so nobody can hand out a permission they do not hold. A `*` verb stands for every verb.
    """
    missing = []
    for rule in granted:
        verbs = list(VERBS) if ALL in rule.verbs else rule.verbs
        for verb in verbs:
            for resource in rule.resources:
                for namespace in rule.namespaces:
                    if not any(
                        (ALL in have.verbs or verb in have.verbs)
                        and any(resource_covers(pattern, resource) for pattern in have.resources)
                        and (ALL in have.namespaces or namespace in have.namespaces)
                        for have in held
                    ):
                        missing.append(f"{verb} {resource} in namespace {namespace}")
    return missing


def forbidden(user: str, attributes: Attributes) -> ForbiddenError:
    return ForbiddenError(
        f"user '{user}' may not {attributes.describe()}: no Role bound to the user allows it; "
        f"ask an administrator to bind one, for example: skyshift role bind editor {user}",
        details={"verb": attributes.verb, "resource": attributes.resource, "namespace": attributes.namespace},
    )


class Authorizer:
    """Decides whether a user may make a request, from all Roles read at most `cache_seconds` ago.

    Writes to Roles or Users through this API server call `invalidate`, so they apply here at once;
    other API servers see them within `cache_seconds`.
    """

    def __init__(self, store: Store, cache_seconds: float = 2.0):
        self.store = store
        self.cache_seconds = cache_seconds
        self._roles: list[Role] | None = None
        self._read_at = 0.0
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        self._roles = None

    async def roles(self) -> list[Role]:
        if self._roles is not None and time.monotonic() - self._read_at <= self.cache_seconds:
            return self._roles
        async with self._lock:
            if self._roles is None or time.monotonic() - self._read_at > self.cache_seconds:
                read_at = time.monotonic()
                self._roles = (await self.store.list(Role)).items
                self._read_at = read_at
            return self._roles

    async def roles_of(self, user: str) -> list[Role]:
        return [role for role in await self.roles() if user in role.spec.users]

    async def rules_of(self, user: str) -> list[PolicyRule]:
        return [rule for role in await self.roles_of(user) for rule in role.spec.rules]

    async def allows(self, user: str, attributes: Attributes) -> bool:
        return rules_allow(await self.rules_of(user), attributes)

    async def check(self, user: str, attributes: Attributes) -> None:
        """Raise ForbiddenError unless one of the user's Roles allows the request."""
        if not await self.allows(user, attributes):
            raise forbidden(user, attributes)

    async def check_grant(self, user: str, rules: list[PolicyRule], what: str) -> None:
        """Raise ForbiddenError unless `user` holds every permission in `rules`; `what` names the grant."""
        missing = uncovered(await self.rules_of(user), rules)
        if missing:
            shown = "; ".join(missing[:5]) + ("; ..." if len(missing) > 5 else "")
            raise ForbiddenError(
                f"user '{user}' may not {what}: it would grant permissions the user does not hold ({shown}); "
                "only a user who holds every permission of a Role can grant it",
                details={"missing": missing},
            )
