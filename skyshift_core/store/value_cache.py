"""The latest stored value of each object key that one `Store` has read, written or watched, bounded in bytes.

`Store.update` uses it when the caller sets a resource_version. If the cache contains that key at
that mod_revision, the write is built from the cached value and its transaction compares both the
mod_revision and the value itself, so no read precedes the write. A value that etcd no longer
contains makes the transaction fail, and the store then reads the key as it would without the
cache. The cache therefore only ever spares a read and never decides an outcome.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

# Default bound of the cached values, in bytes of value (keys and bookkeeping come on top).
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class CachedValue:
    """A key's value at `mod_revision`, shaped like the key-values of an etcd range response."""

    key: bytes
    value: bytes
    mod_revision: int
    # Whether this process encoded the value (a create or update through this Store), which
    # means the value has the current shape of its kind, with every field of this version.
    encoded: bool = False


class ValueCache:
    """Least recently used values by key. Each key keeps only the newest mod_revision seen."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES):
        if max_bytes < 0:
            raise ValueError(f"invalid value cache size {max_bytes!r}: expected a number of bytes >= 0, 0 to disable")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[bytes, CachedValue] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get(self, key: bytes, mod_revision: int) -> CachedValue | None:
        """Return the cached value of `key` when it is the one at `mod_revision`, else None."""
        entry = self._entries.get(key)
        if entry is None or entry.mod_revision != mod_revision:
            return None
        self._entries.move_to_end(key)
        return entry

    def encoded_here(self, key: bytes, mod_revision: int) -> bool:
        """Tell whether this process encoded `key`'s value at `mod_revision` (see CachedValue.encoded)."""
        entry = self._entries.get(key)
        return entry is not None and entry.encoded and entry.mod_revision == mod_revision

    def put(self, key: bytes, value: bytes, mod_revision: int, encoded: bool = False) -> None:
        """Remember `value` as `key`'s value at `mod_revision`, unless a newer one is cached.

        `encoded` marks a value that this process encoded. A later put of the same revision, such
        as the watch event of this process's own write, keeps that mark."""
        if len(value) > self.max_bytes:
            return
        entry = self._entries.get(key)
        if entry is not None:
            if entry.mod_revision > mod_revision:
                return
            if entry.mod_revision == mod_revision and entry.encoded:
                self._entries.move_to_end(key)
                return
            self._bytes -= len(entry.value)
        self._entries[key] = CachedValue(key, value, mod_revision, encoded)
        self._entries.move_to_end(key)
        self._bytes += len(value)
        while self._bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= len(evicted.value)

    def discard(self, key: bytes) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry.value)

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0
