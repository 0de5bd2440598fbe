"""`skyshift exec`'s choice of replica, and its errors for Jobs that have nothing placed to run in."""

from __future__ import annotations

import pytest
from skyshift_k8s.cli import _share_of

from skyshift_core.errors import InvalidError
from skyshift_core.objects import Job


def placed_job(placement: dict[str, list[int]]) -> Job:
    clusters = {name: {"replicas": len(indices), "replica_indices": indices} for name, indices in placement.items()}
    return Job.model_validate(
        {
            "metadata": {"name": "train", "namespace": "default"},
            "spec": {"run": "sleep 60", "replicas": 3},
            "status": {"placement": {name: len(indices) for name, indices in placement.items()}, "clusters": clusters},
        }
    )


def test_lowest_placed_replica_chosen():
    cluster, unit, index = _share_of(placed_job({"b": [2], "a": [0, 1]}), None)

    assert (cluster, index) == ("a", 0)
    assert unit.replica_indices == (0, 1)


def test_unplaced_job_is_error():
    with pytest.raises(InvalidError, match="Job 'train' has no replicas placed on a cluster yet; see: skyshift explain"):
        _share_of(placed_job({}), None)


def test_unplaced_replica_names_the_range():
    with pytest.raises(InvalidError, match="replica 5 of Job 'train' is not placed on any cluster; the Job has replicas 0 to 2"):
        _share_of(placed_job({"a": [0, 1, 2]}), 5)
