"""A minimal valid manifest for every built-in kind, shared by the API and store tests."""

MINIMAL = {
    "Cluster": {"kind": "Cluster", "metadata": {"name": "c1"}, "spec": {"manager": "slurm", "config": {"interface": "cli"}}},
    "Job": {"kind": "Job", "metadata": {"name": "j1"}, "spec": {"run": "echo hi", "replicas": 2}},
    "Service": {"kind": "Service", "metadata": {"name": "s1"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}},
    "Endpoints": {"kind": "Endpoints", "metadata": {"name": "e1"}, "spec": {"endpoints": {"c1": {"num_endpoints": 2}}}},
    "Link": {"kind": "Link", "metadata": {"name": "l1"}, "spec": {"source_cluster": "c1", "target_cluster": "c2"}},
    "FilterPolicy": {
        "kind": "FilterPolicy",
        "metadata": {"name": "f1"},
        "spec": {"cluster_filter": {"include": ["c1"]}, "labels_selector": {"app": "web"}},
    },
    "Namespace": {"kind": "Namespace", "metadata": {"name": "team-a"}},
    "Role": {
        "kind": "Role",
        "metadata": {"name": "r1"},
        # No users: a Role may bind only users that exist.
        "spec": {"rules": [{"verbs": ["get", "list"], "resources": ["jobs"]}], "users": []},
    },
    "User": {"kind": "User", "metadata": {"name": "alice"}, "spec": {"email": "alice@example.com"}},
    "Event": {
        "kind": "Event",
        "metadata": {"name": "ev1"},
        "involved_object": {"kind": "Job", "name": "j1", "namespace": "default"},
        "reason": "Scheduled",
        "message": "placed on c1",
    },
}

# A field change per kind that alters its spec (or, for Event, its top-level data).
SPEC_CHANGE = {
    "Cluster": {"spec": {"cordoned": True}},
    "Job": {"spec": {"replicas": 3}},
    "Service": {"spec": {"type": "NodePort"}},
    "Endpoints": {"spec": {"primary_cluster": "c1"}},
    "Link": {"spec": {"target_cluster": "c3"}},
    "FilterPolicy": {"spec": {"cluster_filter": {"exclude": ["c2"]}}},
    "Namespace": {"spec": {"finalizers": []}},
    "Role": {"spec": {"rules": [{"verbs": ["get"], "resources": ["jobs", "services"]}]}},
    "User": {"spec": {"display_name": "Alice"}},
    "Event": {"message": "placed on c2"},
}
