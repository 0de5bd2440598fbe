"""Replica index assignment across clusters."""

from skyshift_core.objects import ClusterShare
from skyshift_core.scheduler.shares import assign_shares, trim_placement


def indices(shares):
    return {cluster: share.replica_indices for cluster, share in shares.items()}


def test_first_placement_numbers_clusters_in_name_order():
    shares = assign_shares({}, {"b": 2, "a": 3}, 5, generation=1)
    assert indices(shares) == {"a": [0, 1, 2], "b": [3, 4]}
    assert {share.generation for share in shares.values()} == {1}


def test_lost_cluster_indices_move_and_others_stay():
    old = assign_shares({}, {"a": 3, "b": 2}, 5, generation=1)
    # b is lost; its replicas 3 and 4 go to c. a is untouched: same indices, same generation.
    shares = assign_shares(old, {"a": 3, "c": 2}, 5, generation=2)
    assert indices(shares) == {"a": [0, 1, 2], "c": [3, 4]}
    assert shares["a"].generation == 1
    assert shares["c"].generation == 2


def test_grown_share_keeps_its_old_indices():
    old = assign_shares({}, {"a": 2, "b": 2}, 4, generation=1)
    shares = assign_shares(old, {"a": 3, "b": 2}, 5, generation=2)
    assert indices(shares) == {"a": [0, 1, 4], "b": [2, 3]}
    assert shares["b"].generation == 1


def test_scale_down_trims_largest_first():
    assert trim_placement({"a": 3, "b": 2}, 3) == {"a": 2, "b": 1}
    assert trim_placement({"a": 1, "b": 1}, 1) == {"a": 1}


def test_shrunk_share_drops_high_indices():
    old = {"a": ClusterShare(replicas=3, replica_indices=[0, 1, 2], generation=1)}
    shares = assign_shares(old, {"a": 2}, 2, generation=2)
    assert indices(shares) == {"a": [0, 1]}


def units(share):
    return [(unit.generation, unit.replica_indices) for unit in share.work_units()]


def test_grown_share_adds_a_submission():
    """Growth leaves the running submission alone and adds one for the new replicas."""
    old = assign_shares({}, {"a": 2, "b": 2}, 4, generation=1)

    shares = assign_shares(old, {"a": 3, "b": 2}, 5, generation=2)

    assert units(shares["a"]) == [(1, [0, 1]), (2, [4])]
    assert shares["a"].generation == 2
    assert units(shares["b"]) == [(1, [2, 3])]


def test_moved_replicas_join_healthy_share():
    """Replicas moved off a lost cluster do not restart those already running on the other one."""
    old = assign_shares({}, {"a": 1, "b": 1}, 2, generation=1)

    shares = assign_shares(old, {"b": 2}, 2, generation=2)

    assert units(shares["b"]) == [(1, [1]), (2, [0])]
    assert shares["b"].replica_indices == [0, 1]


def test_grown_share_keeps_task_states():
    from skyshift_core.objects import TaskStatus

    old = assign_shares({}, {"a": 1}, 1, generation=1)
    old["a"].tasks = {"0": TaskStatus(state="Running")}

    shares = assign_shares(old, {"a": 2}, 2, generation=2)

    assert shares["a"].tasks == {"0": TaskStatus(state="Running")}


def test_shrink_drops_newest_submission():
    grown = assign_shares(assign_shares({}, {"a": 2}, 2, generation=1), {"a": 3}, 3, generation=2)

    shares = assign_shares(grown, {"a": 2}, 2, generation=3)

    assert units(shares["a"]) == [(1, [0, 1])]
    assert shares["a"].generation == 3


def test_shrink_within_a_submission_resubmits():
    old = assign_shares({}, {"a": 3}, 3, generation=1)

    shares = assign_shares(old, {"a": 2}, 2, generation=2)

    assert units(shares["a"]) == [(2, [0, 1])]


def test_scale_down_keeps_shares_that_fit():
    # 4 replicas on a (0, 1) and b (2, 3), scaled to 2: a keeps its running share, b goes.
    shares = assign_shares({}, {"a": 2, "b": 2}, 4, generation=1)

    placement = trim_placement({"a": 2, "b": 2}, 2, shares)
    trimmed = assign_shares(shares, placement, 2, generation=2)

    assert placement == {"a": 2}
    assert trimmed["a"] == shares["a"]


def test_scale_down_keeps_whole_submissions():
    # a grew from (0, 1) to (0, 1, 4); scaled to 3, it keeps its first submission and b gives one.
    old = assign_shares({}, {"a": 2, "b": 2}, 4, generation=1)
    grown = assign_shares(old, {"a": 3, "b": 2}, 5, generation=2)

    placement = trim_placement({"a": 3, "b": 2}, 3, grown)
    trimmed = assign_shares(grown, placement, 3, generation=3)

    assert placement == {"a": 2, "b": 1}
    assert units(trimmed["a"]) == [(1, [0, 1])]
    assert indices(trimmed) == {"a": [0, 1], "b": [2]}


def test_scale_down_restarts_only_what_must():
    # Each share has an index at or above the new count, so the 2 replicas left are new ones,
    # spread as before.
    shares = assign_shares({}, {"a": 3, "b": 3}, 6, generation=1)

    assert trim_placement({"a": 3, "b": 3}, 2, shares) == {"a": 1, "b": 1}
