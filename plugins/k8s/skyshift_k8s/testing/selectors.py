"""Label and field selectors in the string syntax of list and watch requests.

Label selectors accept `=`, `==`, `!=`, `in`, `notin`, `key` (exists) and `!key` (does not exist),
separated by commas. Field selectors accept `=`, `==` and `!=` on the fields each kind supports.
Parse errors raise `ApiError` 400, as kube-apiserver does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import errors

LABEL_KEY_PATTERN = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
LABEL_VALUE_PATTERN = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


@dataclass(frozen=True)
class Requirement:
    """One term of a label selector: `key operator values`."""

    key: str
    operator: str  # one of "=", "!=", "in", "notin", "exists", "!exists"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.operator in ("=", "in"):
            return present and value in self.values
        if self.operator in ("!=", "notin"):
            return not present or value not in self.values
        if self.operator == "exists":
            return present
        return not present


@dataclass(frozen=True)
class LabelSelector:
    """A parsed label selector; the empty selector matches every object."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(requirement.matches(labels) for requirement in self.requirements)


def _split_terms(text: str) -> list[str]:
    """Split at commas that are not inside a parenthesised value set."""
    terms, depth, current = [], 0, []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    terms.append("".join(current).strip())
    return [term for term in terms if term]


def _validate_key(key: str, selector: str) -> str:
    if not LABEL_KEY_PATTERN.match(key):
        raise errors.bad_request(
            f"unable to parse requirement: invalid label key {key!r} in selector {selector!r}: "
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.'"
        )
    return key


def _validate_value(value: str, selector: str) -> str:
    if len(value) > 63 or not LABEL_VALUE_PATTERN.match(value):
        raise errors.bad_request(
            f"unable to parse requirement: invalid label value {value!r} in selector {selector!r}: "
            "a valid label must be at most 63 characters of alphanumerics, '-', '_' or '.'"
        )
    return value


_SET_TERM = re.compile(r"^(\S+)\s+(in|notin)\s*\((.*)\)$")


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse the `labelSelector` query parameter."""
    if not text:
        return LabelSelector()
    requirements = []
    for term in _split_terms(text):
        set_match = _SET_TERM.match(term)
        if set_match:
            key, operator, raw_values = set_match.groups()
            values = tuple(_validate_value(v.strip(), text) for v in raw_values.split(",") if v.strip())
            if not values:
                raise errors.bad_request(
                    f"unable to parse requirement: {operator} in selector {text!r} needs at least one value"
                )
            requirements.append(Requirement(_validate_key(key, text), operator, values))
            continue
        for symbol, operator in (("!=", "!="), ("==", "="), ("=", "=")):
            if symbol in term:
                key, value = (part.strip() for part in term.split(symbol, 1))
                requirements.append(Requirement(_validate_key(key, text), operator, (_validate_value(value, text),)))
                break
        else:
            if term.startswith("!"):
                requirements.append(Requirement(_validate_key(term[1:].strip(), text), "!exists"))
            else:
                requirements.append(Requirement(_validate_key(term, text), "exists"))
    return LabelSelector(tuple(requirements))


def label_selector_from_object(selector: Mapping[str, Any] | None) -> LabelSelector:
    """Convert a `metav1.LabelSelector` (matchLabels, matchExpressions) to a LabelSelector.

    As in Kubernetes, a missing selector here matches every object; the callers that need
    "matches nothing" check for None themselves.
    """
    if not selector:
        return LabelSelector()
    requirements = [Requirement(key, "=", (value,)) for key, value in (selector.get("matchLabels") or {}).items()]
    operators = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}
    for expression in selector.get("matchExpressions") or []:
        operator = operators.get(expression.get("operator", ""))
        if operator is None:
            raise ValueError(
                f"invalid label selector operator {expression.get('operator')!r}: expected one of {sorted(operators)}"
            )
        requirements.append(Requirement(expression["key"], operator, tuple(expression.get("values") or ())))
    return LabelSelector(tuple(requirements))


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    value: str
    equal: bool


@dataclass(frozen=True)
class FieldSelector:
    """A parsed field selector, checked against the fields that a kind exposes."""

    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, fields: Mapping[str, str]) -> bool:
        for requirement in self.requirements:
            actual = fields.get(requirement.field, "")
            if (actual == requirement.value) != requirement.equal:
                return False
        return True


def parse_field_selector(text: str | None, supported: Mapping[str, Callable[[dict], str]], kind: str) -> FieldSelector:
    """Parse the `fieldSelector` query parameter against a kind's supported fields."""
    if not text:
        return FieldSelector()
    requirements = []
    for term in _split_terms(text):
        for symbol, equal in (("!=", False), ("==", True), ("=", True)):
            if symbol in term:
                field, value = (part.strip() for part in term.split(symbol, 1))
                break
        else:
            raise errors.bad_request(
                f"invalid selector: {text!r}; can't understand {term!r}: expected field=value or field!=value"
            )
        if field not in supported:
            known = ", ".join(f'"{name}"' for name in sorted(supported))
            raise errors.bad_request(
                f'field label not supported: "{field}" is not a known field selector for {kind}: only {known}'
            )
        requirements.append(FieldRequirement(field, value, equal))
    return FieldSelector(tuple(requirements))
