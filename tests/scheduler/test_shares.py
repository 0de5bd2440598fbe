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
