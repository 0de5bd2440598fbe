"""The object arguments of `get`, `describe` and `delete`, in kubectl's three forms.

`KIND [NAME...]`, `KIND,KIND [NAME...]` (each name is looked up in every kind) and
`KIND/NAME [KIND/NAME...]`. The two styles cannot be mixed in one command, as in kubectl. A kind
may carry the `.skyshift` group that `-o name` prints, so `get -o name` output can be passed back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from skyshift_core.client import resolve_model
from skyshift_core.errors import InvalidError
from skyshift_core.objects import Object


@dataclass
class Target:
    """One kind and the names asked for in it; no names means every object of the kind."""

    model: type[Object]
    names: list[str] = field(default_factory=list)


def parse_targets(arguments: Sequence[str], command: str) -> list[Target]:
    """Resolve a command's positional arguments into kinds and names, in the order they were given.

    Raises InvalidError for an unknown kind, an empty kind or name, and a mix of KIND NAME with
    KIND/NAME. `command` (such as `get`) is only used in the messages' examples.
    """
    if not arguments:
        raise InvalidError(f"no kind given: pass KIND [NAME...] or KIND/NAME, for example: skyshift {command} jobs")
    first, rest = arguments[0], list(arguments[1:])
    if "/" in first:
        return _slash_targets(arguments, command)

    if any("/" in name for name in rest):
        # Every argument in KIND/NAME form: the plain names take the kind given first, if it is one kind.
        rewritten = [name if "/" in name else f"{first}/{name}" for name in rest]
        example = f"skyshift {command} {' '.join(rewritten)}" if "," not in first else f"skyshift {command} job/a cluster/b"
        raise InvalidError(
            f"KIND NAME and KIND/NAME cannot be mixed in one command; write every object as KIND/NAME: '{example}'"
        )
    kinds = [_without_group(kind) for kind in first.split(",")]
    if not all(kinds):
        raise InvalidError(f"invalid kind list {first!r}: expected kinds separated by commas, such as jobs,clusters")
    targets: list[Target] = []
    for kind in kinds:
        model = resolve_model(kind)
        if all(target.model is not model for target in targets):
            targets.append(Target(model, list(rest)))
    return targets


def _slash_targets(arguments: Sequence[str], command: str) -> list[Target]:
    """Group KIND/NAME arguments by kind, keeping the order in which each kind first appears."""
    targets: dict[type[Object], Target] = {}
    for argument in arguments:
        kind, slash, name = argument.partition("/")
        if not slash:
            raise InvalidError(
                f"{argument!r} is not in KIND/NAME form: once one argument is KIND/NAME, all must be, "
                f"as in 'skyshift {command} job/a job/b'"
            )
        if not kind or not name or "/" in name:
            raise InvalidError(f"invalid argument {argument!r}: expected KIND/NAME, such as job/train")
        model = resolve_model(_without_group(kind))
        targets.setdefault(model, Target(model)).names.append(name)
    return list(targets.values())


def _without_group(kind: str) -> str:
    """Return `kind` without the `.skyshift` group that `-o name` prints (`job.skyshift` is `job`)."""
    return kind.removesuffix(".skyshift")
