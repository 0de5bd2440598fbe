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
import difflib
import time
from collections.abc import Sequence
from dataclasses import dataclass

from skyshift_core.errors import ForbiddenError, NotFoundError
from skyshift_core.objects import PolicyRule, Role, by_plural
from skyshift_core.objects.misc import VERBS
from skyshift_core.store import Store

ALL = "*"
ADMIN_ROLE = "admin"
EDITOR_ROLE = "editor"
VIEWER_ROLE = "viewer"
# Built-in Roles short of admin that a 403 may suggest, from the fewest permissions up.
SUGGESTED_ROLES = (VIEWER_ROLE, EDITOR_ROLE)
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
# FilterPolicies are left out: they bind only those who cannot change them, so writing them is an
# administrator's task, as Kubernetes' edit ClusterRole may not change ResourceQuotas.
_EDITABLE = ["jobs", "services", "endpoints", "events"]

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
        if self.namespace:
            where = f" in namespace '{self.namespace}'"
        else:
            where = " across all namespaces" if _is_namespaced(self.resource) else ""
        target = f" '{self.name}'" if self.name else ""
        return f"{self.verb} {self.resource}{target}{where}"


# Resources that are not a kind or its status, which routes authorize by name.
_ROUTE_RESOURCES = ("jobs/logs", "jobs/explain", "users/password", "users/tokens", "invites", "leases", "metrics")


def served_resources() -> set[str]:
    """Return every resource name a request can be authorized for: each kind's plural, the status of kinds
    that have one, and the resources of routes (logs, explain, tokens, invites, ...)."""
    from skyshift_core.objects import kinds

    served = set(_ROUTE_RESOURCES)
    for model in kinds().values():
        served.add(model.plural)
        if "status" in model.model_fields:
            served.add(f"{model.plural}/status")
    return served


def unserved_resources(rules: list[PolicyRule]) -> list[str]:
    """Return a warning for each resource of `rules` that names nothing this server serves.

    Such a rule allows nothing, which is almost always a misspelling. It is a warning, not an
    error, because a plugin installed later may add the kind."""
    served = served_resources()
    plurals = {resource.partition("/")[0] for resource in served}
    subresources = {resource.partition("/")[2] for resource in served if "/" in resource}
    warnings = []
    for rule in rules:
        for resource in rule.resources:
            kind, slash, subresource = resource.partition("/")
            if resource == ALL or resource in served:
                continue
            if slash and subresource == ALL and kind in plurals:
                continue
            if slash and kind == ALL and subresource in subresources:
                continue
            candidates = sorted(served | {f"{plural}/*" for plural in plurals})
            close = difflib.get_close_matches(resource, candidates, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            warnings.append(
                f"resource {resource!r} names nothing this API server serves, so the rule allows nothing for it"
                f"{hint} (kinds go by their plural, such as 'jobs'; a plugin installed later may add a kind)"
            )
    return warnings


def limit_rules(rules: list[PolicyRule], namespace: str) -> list[PolicyRule]:
    """Return `rules` as they apply through a binding in `namespace` alone.

    A rule for every namespace applies in that one; a rule that names namespaces applies only if
    it names that one. A rule limited to `namespace` never matches a cluster-scoped kind, whose
    requests have no namespace, as a Kubernetes RoleBinding grants no cluster-scoped access.
    """
    limited = []
    for rule in rules:
        if ALL in rule.namespaces or namespace in rule.namespaces:
            limited.append(rule.model_copy(update={"namespaces": [namespace]}))
    return limited


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


def _rule_allows_verb(rule: PolicyRule, attributes: Attributes) -> bool:
    """True when a rule allows the request's verb on its resource, in whichever namespaces."""
    return (ALL in rule.verbs or attributes.verb in rule.verbs) and any(
        resource_matches(pattern, attributes.resource) for pattern in rule.resources
    )


def rule_allows(rule: PolicyRule, attributes: Attributes) -> bool:
    return _rule_allows_verb(rule, attributes) and _namespace_matches(rule.namespaces, attributes.namespace)


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


def forbidden(user: str, attributes: Attributes, roles: Sequence[Role] = ()) -> ForbiddenError:
    """Build the 403 for a denied request; `roles` are all stored Roles, which the advice is drawn from."""
    scope = _scope_note(user, attributes, roles)
    return ForbiddenError(
        f"user '{user}' may not {attributes.describe()}: no Role bound to the user allows it{scope}; "
        + _grant_advice(user, attributes, roles),
        details={"verb": attributes.verb, "resource": attributes.resource, "namespace": attributes.namespace},
    )


def _is_namespaced(resource: str) -> bool:
    try:
        return by_plural(resource.partition("/")[0]).namespaced
    except NotFoundError:
        return False  # Endpoints that are no kind (leases, invites, metrics) are cluster-scoped.


def _scope_note(user: str, attributes: Attributes, roles: Sequence[Role]) -> str:
    """Return a note that names the namespaces where the user's Roles do allow the verb on the resource, or ''.

    A request across all namespaces gets the note only for a list or watch of a namespaced kind,
    the one case where naming a namespace makes the request allowed.
    """
    if attributes.namespace is None and not (
        attributes.verb in ("list", "watch") and _is_namespaced(attributes.resource)
    ):
        return ""
    role_names: set[str] = set()
    namespaces: set[str] = set()
    for role in roles:
        if user not in role.spec.users:
            continue
        for rule in role.spec.rules:
            # The request was denied, so a rule that matches its verb and resource names other namespaces.
            if _rule_allows_verb(rule, attributes):
                role_names.add(role.metadata.name)
                namespaces.update(namespace for namespace in rule.namespaces if namespace != ALL)
    if not namespaces:
        return ""
    roles_text = _plural("Role", sorted(role_names))
    namespaces_text = _plural("namespace", sorted(namespaces))
    note = f" ({roles_text} {'allows' if len(role_names) == 1 else 'allow'} it only in {namespaces_text}"
    if attributes.namespace is None:
        note += f"; name one with --namespace, such as --namespace {min(namespaces)}"
    return note + ")"


def _plural(noun: str, names: list[str]) -> str:
    return f"{noun} {names[0]}" if len(names) == 1 else f"{noun}s {', '.join(names)}"


def _grant_advice(user: str, attributes: Attributes, roles: Sequence[Role]) -> str:
    """Return advice on how an administrator could allow the request.

    The advice names the first Role of SUGGESTED_ROLES that allows the request by its stored rules
    and that the user does not hold, bound in the request's namespace alone when it has one. It
    names admin only when none of them does, and it always offers a Role of the request's own,
    which a namespaced request gets for its namespace alone.
    """
    bound_names = {role.metadata.name for role in roles if user in role.spec.users}
    stored = {role.metadata.name: role for role in roles}
    namespace = attributes.namespace
    # '*' is quoted because YAML reads a bare * as an alias.
    rule_namespace = namespace if namespace else "'*'"
    own_rule = (
        f"a Role with the rule {{verbs: [{attributes.verb}], resources: [{attributes.resource}], "
        f"namespaces: [{rule_namespace}]}}"
    )
    if namespace:
        own_rule += f", which allows it in namespace '{namespace}' alone"

    for name in SUGGESTED_ROLES:
        role = stored.get(name)
        if role is None or name in bound_names or not rules_allow(role.spec.rules, attributes):
            continue
        if namespace:
            # Bindings limited to the namespace, so that groups stay apart by default.
            return (
                f"ask an administrator to bind the built-in Role {name} in namespace '{namespace}' alone "
                f"(skyshift role bind {name} {user} -n {namespace}), or for {own_rule}"
            )
        return (
            f"ask an administrator to bind the built-in Role {name} (skyshift role bind {name} {user}), "
            f"or for {own_rule}"
        )

    admin = stored.get(ADMIN_ROLE)
    if admin is None or ADMIN_ROLE in bound_names or not rules_allow(admin.spec.rules, attributes):
        return f"no built-in Role that the user lacks allows it; ask an administrator for {own_rule}"
    grants_all = any(rule == BUILTIN_ROLES[ADMIN_ROLE][0] for rule in admin.spec.rules)
    admin_text = "admin, which grants every permission" if grants_all else "admin"
    return (
        f"no built-in Role short of admin ({', '.join(SUGGESTED_ROLES)}) allows it; ask an administrator "
        f"for {own_rule}, or to bind {admin_text} (skyshift role bind admin {user})"
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

    async def bindings_of(self, user: str) -> tuple[list[Role], dict[str, list[Role]]]:
        """Return the Roles bound to `user` in every namespace, and those bound to it in one namespace
        alone, by namespace, in one pass over the Roles, since every request of the user comes here."""
        everywhere: list[Role] = []
        scoped: dict[str, list[Role]] = {}
        for role in await self.roles():
            if user in role.spec.users:
                everywhere.append(role)
            for namespace, users in role.spec.namespace_users.items():
                if user in users:
                    scoped.setdefault(namespace, []).append(role)
        return everywhere, scoped

    async def roles_of(self, user: str) -> list[Role]:
        """Return the Roles bound to `user` in every namespace (not those bound in one namespace)."""
        return (await self.bindings_of(user))[0]

    async def rules_of(self, user: str) -> list[PolicyRule]:
        """Return every rule that applies to `user`: those of its Roles, and those of the Roles bound
        to it in one namespace, limited to that namespace."""
        everywhere, scoped = await self.bindings_of(user)
        rules = [rule for role in everywhere for rule in role.spec.rules]
        for namespace, roles in scoped.items():
            rules.extend(limit_rules([rule for role in roles for rule in role.spec.rules], namespace))
        return rules

    async def allows(self, user: str, attributes: Attributes) -> bool:
        return rules_allow(await self.rules_of(user), attributes)

    async def check(self, user: str, attributes: Attributes) -> None:
        """Raise ForbiddenError unless one of the user's Roles allows the request."""
        if not await self.allows(user, attributes):
            raise forbidden(user, attributes, await self.roles())

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
