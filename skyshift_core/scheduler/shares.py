"""Turning a placement (cluster -> replicas) into shares with global replica indices.

Replica indices are global across clusters: with A holding 3 and B holding 2 replicas, A runs
0-2 and B runs 3-4. When a placement changes (a cluster was lost, the Job was scaled), shares
whose replica count is unchanged keep their indices and generation, so the backend work behind
them is left alone. A share that grows keeps its submissions and gets one more for the new
replicas (see `ClusterShare.units`), and a share that shrinks by whole submissions drops the
newest ones. Any other change gives the share the new generation, and it is submitted again.
"""

from __future__ import annotations

from skyshift_core.objects import ClusterShare
from skyshift_core.objects.job import ShareUnit


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

    # Shares that keep some of their submissions as they are: those that grow, and those that
    # shrink by dropping whole submissions. Their kept indices are taken before others choose.
    kept_units: dict[str, list[ShareUnit]] = {}
    for cluster, count in placement.items():
        share = old.get(cluster)
        if cluster in kept or share is None or not share.replica_indices or count <= 0:
            continue
        units = share.work_units()
        while count < sum(len(unit.replica_indices) for unit in units):
            units = units[:-1]
        kept_indices = [index for unit in units for index in unit.replica_indices]
        if units and not any(index >= replicas or index in used for index in kept_indices):
            kept_units[cluster] = units
            used |= {index for unit in units for index in unit.replica_indices}
    free = [index for index in range(replicas) if index not in used]

    shares = dict(kept)
    for cluster in sorted(placement):
        if cluster in kept or placement[cluster] <= 0:
            continue
        count = placement[cluster]
        units = kept_units.get(cluster)
        if units is not None:
            kept_indices = [index for unit in units for index in unit.replica_indices]
            added, free = free[: count - len(kept_indices)], free[count - len(kept_indices) :]
            if added:
                units = [*units, ShareUnit(generation=generation, replica_indices=added)]
            shares[cluster] = _grown_or_shrunk(old[cluster], units, generation)
            continue
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


def _grown_or_shrunk(old: ClusterShare, units: list[ShareUnit], generation: int) -> ClusterShare:
    """Return the share made of `units`, keeping the recorded state of the replicas still in it."""
    indices = sorted(index for unit in units for index in unit.replica_indices)
    tasks = {key: task for key, task in old.tasks.items() if key.isdigit() and int(key) in indices}
    # One submission at the generation it was made is the plain form of a share.
    single = len(units) == 1 and units[0].generation == generation
    return ClusterShare(
        replicas=len(indices),
        replica_indices=indices,
        generation=generation,
        manager_job_ids=list(old.manager_job_ids),
        tasks=tasks,
        units=[] if single else units,
    )


def trim_placement(
    placement: dict[str, int], replicas: int, shares: dict[str, ClusterShare] | None = None
) -> dict[str, int]:
    """Reduce a placement to `replicas` without restarting a replica that can keep running.

    A cluster keeps the submissions of its share (`shares`) whose replica indices all stay below
    `replicas`, oldest first, as `assign_shares` keeps them. Indices are unique, so all clusters
    can keep theirs together. The replicas still wanted beyond those are new
    submissions, placed one at a time where the placement has room on the cluster that has the
    fewest so far (then by name), so the spread stays as even as it can.
    """
    result: dict[str, int] = {}
    for cluster, count in placement.items():
        share = (shares or {}).get(cluster)
        if share is None or not share.replica_indices:
            continue
        units = share.work_units()
        while units and any(index >= replicas for unit in units for index in unit.replica_indices):
            units = units[:-1]
        size = min(count, sum(len(unit.replica_indices) for unit in units))
        if size:
            result[cluster] = size
    for _ in range(replicas - sum(result.values())):
        room = [cluster for cluster, count in placement.items() if result.get(cluster, 0) < count]
        if not room:
            break
        cluster = min(room, key=lambda name: (result.get(name, 0), name))
        result[cluster] = result.get(cluster, 0) + 1
    return result
