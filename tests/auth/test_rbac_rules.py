"""Rule matching and the privilege-escalation check, as pure functions."""

from __future__ import annotations

import pytest

from skyshift_core.auth.rbac import BUILTIN_ROLES, Attributes, resource_covers, resource_matches, rules_allow, uncovered
from skyshift_core.errors import InvalidError
from skyshift_core.objects import PolicyRule, parse_object


def rule(verbs: list[str], resources: list[str], namespaces: list[str] | None = None) -> PolicyRule:
    return PolicyRule(verbs=verbs, resources=resources, namespaces=namespaces or ["*"])


@pytest.mark.parametrize(
    "pattern, resource, matches",
    [
        ("*", "jobs", True),
        ("*", "jobs/status", True),
        ("jobs", "jobs", True),
        # A plural alone does not reach its subresources, as in Kubernetes.
        ("jobs", "jobs/status", False),
        ("jobs/*", "jobs/status", True),
        ("jobs/*", "jobs/logs", True),
        ("jobs/*", "jobs", False),
        ("*/status", "clusters/status", True),
        ("*/status", "jobs/logs", False),
        ("*/status", "clusters", False),
        ("jobs/status", "jobs/status", True),
        ("jobs/status", "clusters/status", False),
        ("clusters", "jobs", False),
    ],
)
def test_resource_matches(pattern: str, resource: str, matches: bool):
    assert resource_matches(pattern, resource) is matches


@pytest.mark.parametrize(
    "held, granted, covers",
    [
        ("*", "*", True),
        ("*", "jobs/*", True),
        ("jobs/*", "jobs/status", True),
        ("jobs/*", "jobs/*", True),
        ("jobs/*", "*/status", False),
        ("*/status", "jobs/status", True),
        ("*/status", "jobs/*", False),
        ("jobs", "jobs/status", False),
        ("jobs", "*", False),
        ("jobs/status", "jobs", False),
    ],
)
def test_resource_covers(held: str, granted: str, covers: bool):
    assert resource_covers(held, granted) is covers


@pytest.mark.parametrize(
    "attributes, allowed",
    [
        (Attributes("get", "jobs", "dev"), True),
        (Attributes("list", "jobs", "dev"), True),
        (Attributes("delete", "jobs", "dev"), False),
        (Attributes("get", "jobs", "prod"), False),
        # Across all namespaces needs a rule for every namespace.
        (Attributes("list", "jobs", None), False),
        (Attributes("get", "jobs/logs", "dev"), True),
        (Attributes("get", "clusters", None), True),
        (Attributes("update", "clusters", None), False),
    ],
)
def test_rules_allow(attributes: Attributes, allowed: bool):
    rules = [
        rule(["get", "list"], ["jobs", "jobs/logs"], ["dev"]),
        rule(["get"], ["clusters"]),
    ]
    assert rules_allow(rules, attributes) is allowed


def test_uncovered_lists_each_missing_permission():
    held = [rule(["get", "list"], ["jobs"], ["dev"])]
    granted = [rule(["get", "delete"], ["jobs"], ["dev", "prod"])]

    assert uncovered(held, granted) == [
        "get jobs in namespace prod",
        "delete jobs in namespace dev",
        "delete jobs in namespace prod",
    ]


def test_uncovered_star_verb_needs_every_verb():
    every_verb = [rule(["get", "list", "watch", "create", "update", "patch", "delete"], ["jobs"])]
    some_verbs = [rule(["get", "list"], ["jobs"])]

    assert uncovered(every_verb, [rule(["*"], ["jobs"])]) == []
    assert "delete jobs in namespace *" in uncovered(some_verbs, [rule(["*"], ["jobs"])])


def test_uncovered_namespace_star_needs_star():
    held = [rule(["get"], ["jobs"], ["dev", "prod"])]

    assert uncovered(held, [rule(["get"], ["jobs"], ["*"])]) == ["get jobs in namespace *"]


def test_admin_covers_every_builtin_role():
    admin = BUILTIN_ROLES["admin"]
    for name, rules in BUILTIN_ROLES.items():
        assert uncovered(admin, rules) == [], name


def test_viewer_lacks_editor_writes():
    missing = uncovered(BUILTIN_ROLES["viewer"], BUILTIN_ROLES["editor"])

    assert "create jobs in namespace *" in missing
    assert not any(entry.startswith(("get ", "list ", "watch ")) for entry in missing)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("verbs", ["read"], "invalid verb 'read'"),
        ("resources", ["Jobs"], "invalid resource 'Jobs'"),
        ("resources", ["jobs/status/extra"], "invalid resource 'jobs/status/extra'"),
        ("namespaces", ["Team_A"], "invalid namespace 'Team_A'"),
    ],
)
def test_invalid_rule_rejected(field: str, value: list[str], message: str):
    spec_rule = {"verbs": ["get"], "resources": ["jobs"], "namespaces": ["*"], field: value}
    manifest = {"kind": "Role", "metadata": {"name": "r"}, "spec": {"rules": [spec_rule]}}

    with pytest.raises(InvalidError) as raised:
        parse_object(manifest)
    assert message in raised.value.message


def test_role_with_unserved_resource_gets_warning(api):
    # A misspelt resource allows nothing; Kubernetes accepts it in silence, SkyShift warns.
    body = {
        "kind": "Role",
        "metadata": {"name": "typo-x"},
        "spec": {"rules": [{"verbs": ["get"], "resources": ["job", "jobs/log", "jobs", "jobs/*", "*/logs"]}]},
    }

    created = api.post("/api/v1/roles", json=body)

    assert created.status_code == 201, created.text
    warnings = created.headers.get_list("warning")
    assert len(warnings) == 2
    assert warnings[0].startswith(
        '299 - "Role \'typo-x\': resource \'job\' names nothing this API server serves, so the rule allows nothing '
        "for it; did you mean 'jobs'?"
    )
    assert "resource 'jobs/log' names nothing" in warnings[1]
    assert "did you mean 'jobs/logs'?" in warnings[1]


def test_role_of_served_resources_gets_no_warning(api):
    rules = [{"verbs": ["*"], "resources": ["jobs", "jobs/status", "jobs/logs", "users/tokens", "invites", "metrics"]}]
    body = {"kind": "Role", "metadata": {"name": "plain"}, "spec": {"rules": rules}}

    created = api.post("/api/v1/roles", json=body)

    assert created.status_code == 201, created.text
    assert created.headers.get_list("warning") == []


@pytest.mark.parametrize(
    ("attributes", "described"),
    [
        (Attributes("list", "users"), "list users"),
        (Attributes("get", "roles", None, "group-a-jobs"), "get roles 'group-a-jobs'"),
        (Attributes("list", "jobs"), "list jobs across all namespaces"),
        (Attributes("get", "jobs", "team-a", "train"), "get jobs 'train' in namespace 'team-a'"),
        (Attributes("get", "metrics"), "get metrics"),
    ],
)
def test_request_described_by_its_scope(attributes, described):
    # A cluster-scoped kind has no namespace to name.
    assert attributes.describe() == described
