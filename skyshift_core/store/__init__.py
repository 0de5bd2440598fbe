"""Persistence: the etcd-backed object store used by the API server."""

from skyshift_core.store.etcd import ListResult, Store, WatchEvent
from skyshift_core.store.leases import Fence, LeaseRecord

__all__ = ["Fence", "LeaseRecord", "ListResult", "Store", "WatchEvent"]
