"""Label selectors: the Kubernetes string syntax (`app=web,tier!=db,env in (a,b),!legacy`) and
the structured form (`match_labels` plus `match_expressions`) used by placement and policies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Mapping

from pydantic import Field, field_validator, model_validator

from skyshift_core.objects.base import SkyModel

# A label key is an optional DNS subdomain prefix and a name of at most 63 characters,
# as in Kubernetes; values are at most 63 characters of the same alphabet, or empty.
_LABEL_NAME = r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)"
_LABEL_KEY = re.compile(rf"^([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_LABEL_NAME}$")
_LABEL_VALUE = re.compile(rf"^({_LABEL_NAME})?$")


def validate_label_key(key: str, what: str = "label key") -> str:
    """Check a Kubernetes qualified name, as label keys, annotation keys and finalizers are written."""
    if not _LABEL_KEY.match(key):
        raise ValueError(
            f"invalid {what} {key!r}: expected an optional DNS prefix and '/', then at most 63 "
            "characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
        )
    return key


def validate_label_value(value: str) -> str:
    if not _LABEL_VALUE.match(value):
        raise ValueError(
            f"invalid label value {value!r}: expected at most 63 characters of letters, digits, "
            "'-', '_' and '.', starting and ending with a letter or digit"
        )
    return value


class Operator(str, Enum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


class MatchExpression(SkyModel):
    """One requirement on a label: `key` `operator` `values`."""

    key: str
    operator: Operator
    values: list[str] = Field(default_factory=list)

    @field_validator("key")
    @classmethod
    def _check_key(cls, key: str) -> str:
        return validate_label_key(key)

    @model_validator(mode="after")
    def _check_values(self) -> "MatchExpression":
        if self.operator in (Operator.IN, Operator.NOT_IN) and not self.values:
            raise ValueError(f"operator {self.operator.value} on key {self.key!r} needs at least one value")
        if self.operator in (Operator.EXISTS, Operator.DOES_NOT_EXIST) and self.values:
            raise ValueError(f"operator {self.operator.value} on key {self.key!r} takes no values")
        return self

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator is Operator.IN:
            return labels.get(self.key) in self.values
        if self.operator is Operator.NOT_IN:
            return labels.get(self.key) not in self.values
        if self.operator is Operator.EXISTS:
            return self.key in labels
        return self.key not in labels


class LabelSelector(SkyModel):
    """Structured selector: every `match_labels` pair and every expression must hold."""

    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[MatchExpression] = Field(default_factory=list)

    @field_validator("match_labels")
    @classmethod
    def _check_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        for key, value in labels.items():
            validate_label_key(key)
            validate_label_value(value)
        return labels

    def is_empty(self) -> bool:
        return not self.match_labels and not self.match_expressions

    def matches(self, labels: Mapping[str, str]) -> bool:
        if any(labels.get(key) != value for key, value in self.match_labels.items()):
            return False
        return all(expression.matches(labels) for expression in self.match_expressions)


@dataclass(frozen=True)
class Requirement:
    """One clause of a string selector."""

    key: str
    operator: str  # one of =, !=, in, notin, exists, !
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "=":
            return labels.get(self.key) == self.values[0]
        if self.operator == "!=":
            return labels.get(self.key) != self.values[0]
        if self.operator == "in":
            return labels.get(self.key) in self.values
        if self.operator == "notin":
            return labels.get(self.key) not in self.values
        if self.operator == "exists":
            return self.key in labels
        return self.key not in labels


_CLAUSE_SET = re.compile(r"^\s*(\S+?)\s+(in|notin)\s*\(([^)]*)\)\s*$")
_CLAUSE_EQ = re.compile(r"^\s*([^=!\s]+)\s*(==|=|!=)\s*([^=!\s]*)\s*$")
_CLAUSE_EXISTS = re.compile(r"^\s*(!?)\s*([^=!\s(),]+)\s*$")


def _split_clauses(selector: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    clauses, depth, current = [], 0, []
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            clauses.append("".join(current))
            current = []
        else:
            current.append(char)
    clauses.append("".join(current))
    return clauses


def parse_selector(selector: str | None) -> tuple[Requirement, ...]:
    """Parse a Kubernetes label selector string; raise ValueError naming the bad clause."""
    if selector is None or not selector.strip():
        return ()
    requirements = []
    for clause in _split_clauses(selector):
        if not clause.strip():
            raise ValueError(f"invalid label selector {selector!r}: empty clause")
        requirement = _parse_clause(clause)
        if requirement is None:
            raise ValueError(
                f"invalid label selector clause {clause.strip()!r}: expected 'key=value', 'key!=value', "
                "'key in (a,b)', 'key notin (a,b)', 'key' or '!key'"
            )
        validate_label_key(requirement.key)
        for value in requirement.values:
            validate_label_value(value)
        requirements.append(requirement)
    return tuple(requirements)


def _parse_clause(clause: str) -> Requirement | None:
    match = _CLAUSE_SET.match(clause)
    if match:
        values = tuple(value.strip() for value in match.group(3).split(",") if value.strip())
        if not values:
            return None
        return Requirement(match.group(1), match.group(2), values)
    match = _CLAUSE_EQ.match(clause)
    if match:
        operator = "!=" if match.group(2) == "!=" else "="
        return Requirement(match.group(1), operator, (match.group(3),))
    match = _CLAUSE_EXISTS.match(clause)
    if match:
        return Requirement(match.group(2), "!" if match.group(1) else "exists")
    return None


def selector_matches(requirements: tuple[Requirement, ...], labels: Mapping[str, str]) -> bool:
    return all(requirement.matches(labels) for requirement in requirements)


# ---- field selectors ----------------------------------------------------------------------------

# Operators of a field selector clause, longest first so that '==' is not read as '=' and '='.
_FIELD_OPERATORS = ("!=", "==", "=")


@dataclass(frozen=True)
class FieldRequirement:
    """One clause of a field selector: `field` (a dotted path such as metadata.name) `operator` `value`."""

    field: str
    operator: str  # '=' or '!='
    value: str

    def matches(self, source: object) -> bool:
        equal = field_value(source, self.field) == self.value
        return equal if self.operator == "=" else not equal


def field_value(source: object, path: str) -> str:
    """Return the value at a dotted `path` of an object or of its decoded JSON, as a field selector compares it.

    A missing or null value reads as the empty string, as the namespace of a cluster-scoped object
    does in Kubernetes, and an enum member reads as its value.
    """
    value = source
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else getattr(value, part, None)
        if value is None:
            return ""
    if isinstance(value, Enum):
        value = value.value
    return str(value)


def parse_field_selector(selector: str | None, supported: tuple[str, ...]) -> tuple[FieldRequirement, ...]:
    """Parse a Kubernetes field selector string such as `metadata.name=web,status.phase!=Failed`.

    Clauses are separated by commas and use `=`, `==` or `!=`. A backslash escapes a comma, an
    equals sign or a backslash inside a value. Raises ValueError naming the clause that is not
    understood, or the field when it is not one of `supported`.
    """
    if selector is None or not selector.strip():
        return ()
    requirements = []
    for clause in _split_escaped(selector, ","):
        if not clause.strip():
            raise ValueError(f"invalid field selector {selector!r}: empty clause; separate clauses with one comma")
        requirement = _parse_field_clause(clause)
        if requirement is None:
            raise ValueError(
                f"invalid field selector clause {clause.strip()!r}: expected 'field=value', 'field==value' "
                "or 'field!=value', with '\\' before a ',' or '=' inside a value"
            )
        if requirement.field not in supported:
            raise ValueError(f"field label not supported: {requirement.field}; supported fields: {', '.join(supported)}")
        requirements.append(requirement)
    return tuple(requirements)


def _split_escaped(text: str, separator: str) -> list[str]:
    """Split `text` at each `separator` that no backslash escapes; the escapes stay in the parts."""
    parts, current, escaped = [], [], False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            current.append(char)
            escaped = True
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _parse_field_clause(clause: str) -> FieldRequirement | None:
    # The field is everything before the first unescaped operator; a field never contains one.
    for index in range(len(clause)):
        for operator in _FIELD_OPERATORS:
            if clause.startswith(operator, index):
                field = clause[:index].strip()
                value = _unescape_field_value(clause[index + len(operator) :].strip())
                if not field or value is None:
                    return None
                return FieldRequirement(field, "!=" if operator == "!=" else "=", value)
        if clause[index] == "\\":
            return None  # An escape belongs in the value, not in the field.
    return None


def _unescape_field_value(text: str) -> str | None:
    """Resolve `\\,`, `\\=` and `\\\\` in a value; return None for another escape or a bare '=' or ','."""
    value, escaped = [], False
    for char in text:
        if escaped:
            if char not in ("\\", ",", "="):
                return None
            value.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in ("=", ","):
            return None
        else:
            value.append(char)
    return None if escaped else "".join(value)


def fields_match(requirements: tuple[FieldRequirement, ...], source: object) -> bool:
    """Say whether an object, or its decoded JSON, meets every clause of a field selector."""
    return all(requirement.matches(source) for requirement in requirements)
