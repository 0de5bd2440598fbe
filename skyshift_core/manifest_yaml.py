"""YAML parsing for manifests, request bodies and configuration files.

It differs from `yaml.safe_load` in three ways:
- A value like `10:00` stays the string "10:00". YAML 1.1 reads it as the base-60 number 600,
  which turns a Slurm time limit of ten minutes into ten hours.
- A date like `2024-01-01` stays a string, which JSON can carry, where `safe_load` returns a
  Python date.
- A key given twice in one mapping is an error that names the key and both lines, where
  `safe_load` keeps the last value without a word.
- A document whose aliases expand to more than MAX_EXPANDED_NODES values, or refer to themselves,
  is an error. A few hundred bytes of nested aliases (a "billion laughs" document) otherwise
  expand to millions of values in everything that walks the result.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any

import yaml
from yaml.constructor import ConstructorError

# PyYAML's int and float patterns without their base-60 alternatives (`1:30`, `1:30.5`).
_INT = re.compile(
    r"""^(?:[-+]?0b[0-1_]+
    |[-+]?0[0-7_]+
    |[-+]?(?:0|[1-9][0-9_]*)
    |[-+]?0x[0-9a-fA-F_]+)$""",
    re.X,
)
_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
    |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"

_Base: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Values that a document may expand to through its aliases. A manifest without aliases has far
# fewer: a Job with a hundred environment variables has a few hundred.
MAX_EXPANDED_NODES = 100_000


def _without_base_60(tag: str, pattern: re.Pattern[str]) -> tuple[str, re.Pattern[str]]:
    if tag == _INT_TAG:
        return tag, _INT
    if tag == _FLOAT_TAG:
        return tag, _FLOAT
    return tag, pattern


class ManifestLoader(_Base):  # type: ignore[misc, valid-type]
    """A safe YAML loader without base-60 numbers or dates that rejects a key given twice in one mapping."""

    yaml_implicit_resolvers = {
        first: [_without_base_60(tag, pattern) for tag, pattern in resolvers if tag != _TIMESTAMP_TAG]
        for first, resolvers in _Base.yaml_implicit_resolvers.items()
    }

    def construct_document(self, node: yaml.Node) -> Any:
        _check_expansion(node)
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                earlier = seen.get(key)
            except TypeError:
                # An unhashable key; the base class reports it.
                continue
            if earlier is not None:
                raise ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}, first given on line {earlier.start_mark.line + 1}; "
                    "remove one of them",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


_RECURSIVE = "an alias refers to a value that contains it; a manifest cannot be recursive"


def _check_expansion(root: yaml.Node) -> None:
    """Raise ConstructorError when the document's aliases expand past MAX_EXPANDED_NODES values or
    form a cycle. Each distinct node is counted once, so the check is linear in the document."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        children = _children(node)
        if children_done:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in children)
            if sizes[key] > MAX_EXPANDED_NODES:
                raise ConstructorError(
                    None, None,
                    f"the document's aliases expand to more than {MAX_EXPANDED_NODES:,} values; write the "
                    "values out or use fewer nested aliases",
                    node.start_mark,
                )  # fmt: skip
            continue
        if key in open_nodes:
            raise ConstructorError(None, None, _RECURSIVE, node.start_mark)
        open_nodes.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in open_nodes:
                raise ConstructorError(None, None, _RECURSIVE, child.start_mark)
            if id(child) not in sizes:
                stack.append((child, False))


class _NamedText(io.StringIO):
    """Text with the name that the parser's error messages give as its origin, such as a file name."""

    def __init__(self, text: str | bytes, name: str):
        super().__init__(text.decode() if isinstance(text, bytes) else text)
        self.name = name


def load(text: str | bytes, name: str = "<text>") -> Any:
    """Parse one YAML document; errors name its origin as `name`."""
    return yaml.load(_NamedText(text, name), Loader=ManifestLoader)  # noqa: S506 - ManifestLoader is a safe loader


def load_all(text: str | bytes, name: str = "<text>") -> Iterator[Any]:
    """Parse every document of a YAML stream, one at a time; errors name its origin as `name`."""
    return yaml.load_all(_NamedText(text, name), Loader=ManifestLoader)  # noqa: S506 - ManifestLoader is a safe loader
