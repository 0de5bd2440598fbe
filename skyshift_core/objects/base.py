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

    # Cache of each class's accepted input keys and the field each one names, filled on first validation.
    _spellings_cache: ClassVar[dict[type, dict[str, str]]] = {}
    # Added to the error for an unknown field that is close to no valid one: where it may belong.
    unknown_field_hint: ClassVar[str] = ""
    # Fields that other tools name differently (Kubernetes' `command`, Slurm's `ntasks`): the key
    # as users write it, mapped to the field that takes its place and how to write it there.
    synonyms: ClassVar[dict[str, tuple[str, str]]] = {}

    @classmethod
    def spellings(cls) -> dict[str, str]:
        """Map every input key this model accepts (field names, camelCase aliases, extra aliases) to its field."""
        cached = SkyModel._spellings_cache.get(cls)
        if cached is not None:
            return cached
        spellings: dict[str, str] = {}
        for name, field in cls.model_fields.items():
            spellings[name] = name
            spellings[to_camel(name)] = name
            alias = field.validation_alias
            if isinstance(alias, str):
                spellings[alias] = name
            elif isinstance(alias, AliasChoices):
                spellings.update((choice, name) for choice in alias.choices if isinstance(choice, str))
        SkyModel._spellings_cache[cls] = spellings
        return spellings

    @classmethod
    def accepted_keys(cls) -> frozenset[str]:
        """Return every input key this model accepts: field names, camelCase aliases and extra aliases."""
        return frozenset(cls.spellings())

    @classmethod
    def _unknown_field(cls, key: str, names: list[str]) -> str:
        synonym = cls.synonyms.get(key)
        if synonym is not None:
            field, how = synonym
            return f"unknown field '{key}' (use '{field}': {how})"
        return f"unknown field '{key}'{suggest(key, names)}"

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_fields(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        spellings = cls.spellings()
        unknown = [key for key in data if key not in spellings]
        if unknown:
            names = sorted(cls.model_fields)
            problems = [cls._unknown_field(str(key), names) for key in unknown]
            unplaced = [key for key in unknown if not suggest(str(key), names) and str(key) not in cls.synonyms]
            hint = cls.unknown_field_hint if unplaced else ""
            raise ValueError("; ".join(problems) + f"; valid fields: {', '.join(names)}" + (f"; {hint}" if hint else ""))
        fields = [spellings[key] for key in data]
        if len(set(fields)) < len(fields):
            spellings_by_field: dict[str, list[str]] = {}
            for key, field in zip(data, fields):
                spellings_by_field.setdefault(field, []).append(key)
            problems = [
                f"field '{field}' is given more than once, as {' and '.join(repr(key) for key in keys)}"
                for field, keys in spellings_by_field.items()
                if len(keys) > 1
            ]
            raise ValueError("; ".join(problems) + "; keep one spelling")
        return data
