"""Object model: every kind SkyShift stores, as pydantic v2 models (part of the plugin API)."""

from skyshift_core.objects.cluster import Cluster, ClusterPhase, ClusterSpec, ClusterStatus, NodeResources
from skyshift_core.objects.job import (
    ClusterShare,
    Job,
    JobPhase,
    JobSpec,
    JobStatus,
    Placement,
    PlacementFilter,
    PlacementPreference,
    RestartPolicy,
    TaskStatus,
    Volume,
)
from skyshift_core.objects.meta import (
    DEFAULT_NAMESPACE,
    Condition,
    Object,
    ObjectMeta,
    set_condition,
    utc_now,
    validate_name,
)
from skyshift_core.objects.misc import Event, FilterPolicy, Link, Namespace, ObjectReference, PolicyRule, Role, User
from skyshift_core.objects.registry import by_plural, kinds, parse_object, register_kind, resolve_kind
from skyshift_core.objects.resources import ResourceList, Resources
from skyshift_core.objects.selectors import LabelSelector, MatchExpression, parse_selector, selector_matches
from skyshift_core.objects.service import Endpoints, Service

__all__ = [
    "DEFAULT_NAMESPACE",
    "Cluster",
    "ClusterPhase",
    "ClusterShare",
    "ClusterSpec",
    "ClusterStatus",
    "Condition",
    "Endpoints",
    "Event",
    "FilterPolicy",
    "Job",
    "JobPhase",
    "JobSpec",
    "JobStatus",
    "LabelSelector",
    "Link",
    "MatchExpression",
    "Namespace",
    "NodeResources",
    "Object",
    "ObjectMeta",
    "ObjectReference",
    "Placement",
    "PlacementFilter",
    "PlacementPreference",
    "PolicyRule",
    "ResourceList",
    "Resources",
    "RestartPolicy",
    "Role",
    "Service",
    "TaskStatus",
    "User",
    "Volume",
    "by_plural",
    "kinds",
    "parse_object",
    "parse_selector",
    "register_kind",
    "resolve_kind",
    "selector_matches",
    "set_condition",
    "utc_now",
    "validate_name",
]
