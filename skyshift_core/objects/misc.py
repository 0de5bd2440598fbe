"""The smaller kinds: Namespace, Link, FilterPolicy, Role, User and Event."""

from __future__ import annotations

import re
from datetime import datetime
from enum import Enum
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from skyshift_core.objects.base import SkyModel
from skyshift_core.objects.meta import Condition, Object, validate_name
from skyshift_core.objects.selectors import validate_label_key, validate_label_value


class NamespaceStatus(SkyModel):
    phase: Literal["Active", "Terminating"] = "Active"


class Namespace(Object):
    plural: ClassVar[str] = "namespaces"
    singular: ClassVar[str] = "namespace"
    short_names: ClassVar[tuple[str, ...]] = ("ns",)
    namespaced: ClassVar[bool] = False
    table_columns: ClassVar[tuple[str, ...]] = ("STATUS", "AGE")

    kind: Literal["Namespace"] = "Namespace"
    spec: dict = Field(default_factory=dict)
    status: NamespaceStatus = Field(default_factory=NamespaceStatus)

    def table_row(self) -> dict[str, str]:
        return {"STATUS": self.status.phase}


class LinkPhase(str, Enum):
    INIT = "INIT"
    ACTIVE = "ACTIVE"
    FAILED = "FAILED"


class LinkSpec(SkyModel):
    source_cluster: str
    target_cluster: str

    @field_validator("source_cluster", "target_cluster")
    @classmethod
    def _check_cluster(cls, name: str, info) -> str:
        return validate_name(name, info.field_name)


class LinkStatus(SkyModel):
    phase: LinkPhase = LinkPhase.INIT
    conditions: list[Condition] = Field(default_factory=list)


class Link(Object):
    """A network link between two clusters, set up by a network provider plugin."""

    plural: ClassVar[str] = "links"
    singular: ClassVar[str] = "link"
    namespaced: ClassVar[bool] = False
    table_columns: ClassVar[tuple[str, ...]] = ("SOURCE", "TARGET", "STATUS", "AGE")

    kind: Literal["Link"] = "Link"
    spec: LinkSpec
    status: LinkStatus = Field(default_factory=LinkStatus)

    def table_row(self) -> dict[str, str]:
        return {"SOURCE": self.spec.source_cluster, "TARGET": self.spec.target_cluster, "STATUS": self.status.phase.value}


class ClusterFilter(SkyModel):
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)


class FilterPolicySpec(SkyModel):
    """Jobs whose labels match `labels_selector` may run only on `cluster_filter.include`
    (when not empty) and never on `cluster_filter.exclude`."""

    cluster_filter: ClusterFilter = Field(default_factory=ClusterFilter)
    labels_selector: dict[str, str] = Field(default_factory=dict)

    @field_validator("labels_selector")
    @classmethod
    def _check_selector(cls, selector: dict[str, str]) -> dict[str, str]:
        for key, value in selector.items():
            validate_label_key(key)
            validate_label_value(value)
        return selector


class FilterPolicy(Object):
    plural: ClassVar[str] = "filterpolicies"
    singular: ClassVar[str] = "filterpolicy"
    short_names: ClassVar[tuple[str, ...]] = ("fp",)
    table_columns: ClassVar[tuple[str, ...]] = ("INCLUDE", "EXCLUDE", "AGE")

    kind: Literal["FilterPolicy"] = "FilterPolicy"
    spec: FilterPolicySpec = Field(default_factory=FilterPolicySpec)
    status: dict = Field(default_factory=dict)

    def table_row(self) -> dict[str, str]:
        return {
            "INCLUDE": ",".join(self.spec.cluster_filter.include) or "<all>",
            "EXCLUDE": ",".join(self.spec.cluster_filter.exclude) or "<none>",
        }


VERBS = ("get", "list", "watch", "create", "update", "patch", "delete")
# `*`, a plural (`jobs`), or a plural or `*` followed by `/` and a subresource or `*` (`jobs/status`, `*/logs`).
_RESOURCE_PATTERN = re.compile(r"^(\*|[a-z0-9][a-z0-9-]*)(/(\*|[a-z0-9][a-z0-9-]*))?$")


class PolicyRule(SkyModel):
    """Verbs allowed on resources (plural kinds or `kind/subresource`) in namespaces; `*` matches all.

    Matching is described in `skyshift_core.auth.rbac`.
    """

    verbs: list[str]
    resources: list[str]
    namespaces: list[str] = Field(default_factory=lambda: ["*"])

    @field_validator("verbs")
    @classmethod
    def _check_verbs(cls, verbs: list[str]) -> list[str]:
        for verb in verbs:
            if verb != "*" and verb not in VERBS:
                raise ValueError(f"invalid verb {verb!r}: expected one of {', '.join(VERBS)} or '*'")
        return verbs

    @field_validator("resources")
    @classmethod
    def _check_resources(cls, resources: list[str]) -> list[str]:
        for resource in resources:
            if not _RESOURCE_PATTERN.match(resource):
                raise ValueError(
                    f"invalid resource {resource!r}: expected '*', a plural such as 'jobs', "
                    "or a subresource such as 'jobs/status', 'jobs/*' or '*/logs'"
                )
        return resources

    @field_validator("namespaces")
    @classmethod
    def _check_namespaces(cls, namespaces: list[str]) -> list[str]:
        for namespace in namespaces:
            if namespace != "*":
                validate_name(namespace, "namespace")
        return namespaces


class RoleSpec(SkyModel):
    rules: list[PolicyRule] = Field(default_factory=list)
    # Names of the Users this Role is bound to: the role binding. Deleting a User removes its name here.
    users: list[str] = Field(default_factory=list)

    # Users bound in one namespace only (namespace -> user names), as a Kubernetes RoleBinding binds
    # a ClusterRole: the Role's rules apply to them in that namespace, and to no cluster-scoped kind.
    namespace_users: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("users")
    @classmethod
    def _check_users(cls, users: list[str]) -> list[str]:
        for user in users:
            validate_name(user, "user name")
        return users

    @field_validator("namespace_users")
    @classmethod
    def _check_namespace_users(cls, namespace_users: dict[str, list[str]]) -> dict[str, list[str]]:
        for namespace, users in namespace_users.items():
            validate_name(namespace, "namespace")
            for user in users:
                validate_name(user, "user name")
        return namespace_users

    def bound_in(self, user: str) -> list[str]:
        """Return the namespaces in which `user` is bound to the Role alone, sorted."""
        return sorted(namespace for namespace, users in self.namespace_users.items() if user in users)


class Role(Object):
    plural: ClassVar[str] = "roles"
    singular: ClassVar[str] = "role"
    namespaced: ClassVar[bool] = False
    table_columns: ClassVar[tuple[str, ...]] = ("USERS", "AGE")

    kind: Literal["Role"] = "Role"
    spec: RoleSpec = Field(default_factory=RoleSpec)
    status: dict = Field(default_factory=dict)

    def table_row(self) -> dict[str, str]:
        # A user bound in one namespace shows as NAMESPACE/USER.
        namespace_users = sorted(self.spec.namespace_users.items())
        scoped = [f"{namespace}/{user}" for namespace, users in namespace_users for user in users]
        return {"USERS": ",".join([*self.spec.users, *scoped]) or "<none>"}


class UserSpec(SkyModel):
    email: str | None = None
    display_name: str | None = None


class User(Object):
    plural: ClassVar[str] = "users"
    singular: ClassVar[str] = "user"
    namespaced: ClassVar[bool] = False
    table_columns: ClassVar[tuple[str, ...]] = ("EMAIL", "AGE")

    kind: Literal["User"] = "User"
    spec: UserSpec = Field(default_factory=UserSpec)
    status: dict = Field(default_factory=dict)

    def table_row(self) -> dict[str, str]:
        return {"EMAIL": self.spec.email or "<none>"}


class ObjectReference(SkyModel):
    kind: str
    name: str
    namespace: str | None = None
    uid: str | None = None


class Event(Object):
    """Something that happened to an object, for `skyshift describe`; fields as Kubernetes' core/v1 Event."""

    plural: ClassVar[str] = "events"
    singular: ClassVar[str] = "event"
    short_names: ClassVar[tuple[str, ...]] = ("ev",)
    # MESSAGE comes last, as in kubectl, so that a long message pads no column after it.
    table_columns: ClassVar[tuple[str, ...]] = ("TYPE", "REASON", "OBJECT", "AGE", "MESSAGE")

    kind: Literal["Event"] = "Event"
    involved_object: ObjectReference
    reason: str = ""
    message: str = ""
    type: Literal["Normal", "Warning"] = "Normal"
    count: int = Field(default=1, ge=1)
    source: str = ""
    first_timestamp: datetime | None = None
    last_timestamp: datetime | None = None
    status: dict = Field(default_factory=dict)

    def table_row(self) -> dict[str, str]:
        return {
            "TYPE": self.type,
            "REASON": self.reason,
            "OBJECT": f"{self.involved_object.kind.lower()}/{self.involved_object.name}",
            "MESSAGE": self.message,
        }
