"""YAML parsing for manifests, request bodies and configuration files.

It differs from `yaml.safe_load` in three ways:
- A value like `10:00` stays the string "10:00". YAML 1.1 reads it as the base-60 number 600,
  which turns a Slurm time limit of ten minutes into ten hours.
- A date like `2024-01-01` stays a string, which JSON can carry, where `safe_load` returns a
  Python date.
- A key given twice in one mapping is an error that names the key and both lines, where
  `safe_load` keeps the last value without a word.
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
