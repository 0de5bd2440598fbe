"""Base model for every object part: snake_case fields that also accept camelCase input.

Unknown fields are rejected by name, with the closest valid name as a suggestion, so a typo in a
manifest is caught at `skyshift apply` instead of being silently dropped.
"""

from __future__ import annotations

import difflib
from typing import Any, ClassVar

from pydantic import AliasChoices, AliasGenerator, BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel


def suggest(name: str, choices: list[str]) -> str:
    """Return a ` (did you mean 'x'?)` hint for the closest choice, or an empty string."""
    same_letters = [choice for choice in choices if choice.lower() == name.lower()]
    if same_letters:
        return f" (did you mean '{same_letters[0]}'?)"
    matches = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    if not matches:
        matches = difflib.get_close_matches(name.lower(), [c.lower() for c in choices], n=1, cutoff=0.6)
        if matches:
            matches = [next(c for c in choices if c.lower() == matches[0])]
    return f" (did you mean '{matches[0]}'?)" if matches else ""


class SkyModel(BaseModel):
    """Strict model: snake_case output, snake_case or camelCase input, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=AliasGenerator(validation_alias=to_camel),
        validate_by_name=True,
        validate_by_alias=True,
        extra="forbid",
    )

    # Cache of accepted input keys per class, filled on first validation.
    _accepted_keys_cache: ClassVar[dict[type, frozenset[str]]] = {}

    @classmethod
    def accepted_keys(cls) -> frozenset[str]:
        """Every input key this model accepts: field names, camelCase aliases and extra aliases."""
        cached = SkyModel._accepted_keys_cache.get(cls)
        if cached is not None:
            return cached
        keys: set[str] = set()
        for name, field in cls.model_fields.items():
            keys.add(name)
            keys.add(to_camel(name))
            alias = field.validation_alias
            if isinstance(alias, str):
                keys.add(alias)
            elif isinstance(alias, AliasChoices):
                keys.update(choice for choice in alias.choices if isinstance(choice, str))
        frozen = frozenset(keys)
        SkyModel._accepted_keys_cache[cls] = frozen
        return frozen

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_fields(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        accepted = cls.accepted_keys()
        unknown = [key for key in data if key not in accepted]
        if unknown:
            names = sorted(cls.model_fields)
            problems = [f"unknown field '{key}'{suggest(str(key), names)}" for key in unknown]
            raise ValueError("; ".join(problems) + f"; valid fields: {', '.join(names)}")
        return data
