"""Turning a placement (cluster -> replicas) into shares with global replica indices.

Replica indices are global across clusters: with A holding 3 and B holding 2 replicas, A runs
0-2 and B runs 3-4. When a placement changes (a cluster was lost, the Job was scaled), shares
whose replica count is unchanged keep their indices and generation, so the backend work behind
them is left alone; only changed shares get the new generation and are resubmitted.
"""

from __future__ import annotations

from skyshift_core.objects import ClusterShare


def assign_shares(
    old: dict[str, ClusterShare], placement: dict[str, int], replicas: int, generation: int
) -> dict[str, ClusterShare]:
    kept: dict[str, ClusterShare] = {}
    for cluster, share in old.items():
        indices = share.replica_indices
        unchanged = placement.get(cluster) == len(indices) and all(index < replicas for index in indices)
        if unchanged and indices:
            kept[cluster] = share
    used = {index for share in kept.values() for index in share.replica_indices}
    free = [index for index in range(replicas) if index not in used]

    shares = dict(kept)
    for cluster in sorted(placement):
        if cluster in kept or placement[cluster] <= 0:
            continue
        count = placement[cluster]
        # Prefer the indices this cluster ran before, so a resized share changes as little as possible.
        previous = [index for index in old.get(cluster, ClusterShare()).replica_indices if index in free]
        chosen = previous[:count]
        for index in free:
            if len(chosen) == count:
                break
            if index not in chosen:
                chosen.append(index)
        free = [index for index in free if index not in chosen]
        shares[cluster] = ClusterShare(replicas=count, replica_indices=sorted(chosen), generation=generation)
    return shares


def trim_placement(placement: dict[str, int], replicas: int) -> dict[str, int]:
    """Reduce a placement to `replicas`, taking from the clusters that hold the most first (then by
    name, last first), as a scale-down that keeps the spread even."""
    result = dict(placement)
    excess = sum(result.values()) - replicas
    while excess > 0:
        cluster = max(result, key=lambda name: (result[name], name))
        result[cluster] -= 1
        if result[cluster] == 0:
            del result[cluster]
        excess -= 1
    return result
