"""etcd key layout: `/skyshift/<plural>/<namespace>/<name>`, or `/skyshift/<plural>/<name>`
for cluster-scoped kinds. Every prefix ends in `/` so namespace `dev` never matches `dev2`."""

from __future__ import annotations

from skyshift_core.objects.meta import Object

ROOT = "/skyshift"


def object_key(model: type[Object], namespace: str | None, name: str, root: str = ROOT) -> bytes:
    if model.namespaced:
        return f"{root}/{model.plural}/{namespace}/{name}".encode()
    return f"{root}/{model.plural}/{name}".encode()


def list_prefix(model: type[Object], namespace: str | None, root: str = ROOT) -> bytes:
    """Prefix of every object of a kind, or of one namespace's objects of a namespaced kind."""
    if model.namespaced and namespace:
        return f"{root}/{model.plural}/{namespace}/".encode()
    return f"{root}/{model.plural}/".encode()


def prefix_range_end(prefix: bytes) -> bytes:
    """The first key after every key that starts with `prefix`, as etcd range ends are written."""
    end = bytearray(prefix)
    for index in range(len(end) - 1, -1, -1):
        if end[index] < 0xFF:
            end[index] += 1
            return bytes(end[: index + 1])
    return b"\0"
