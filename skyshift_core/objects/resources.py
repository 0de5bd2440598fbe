"""Resource amounts: CPUs, memory and disk in MiB, GPUs, and GPUs by accelerator type.

Manifests write accelerator types as extra keys (`A100: 2`), as the original SkyShift and
SkyPilot do; they are gathered into `accelerators`.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from pydantic import Field, field_validator, model_validator

from skyshift_core.objects.base import SkyModel, suggest
from skyshift_core.objects.quantity import parse_cpus, parse_mebibytes

# Accelerator names carry an upper-case letter or a digit (A100, H100, T4, L40S, TPU-v4);
# an all-lower-case unknown key is much more likely a misspelt field than a GPU model.
_ACCELERATOR = re.compile(r"^(?=.*[A-Z0-9])[A-Za-z][A-Za-z0-9_.-]*$")


def _resembles_field(key: str, names: list[str]) -> bool:
    """Return True when `key` is a field name in other letter case or nearly so (`CPUs`, `Memory`, `GPU`).

    Such a key is a misspelt field, not an accelerator type, and would otherwise request GPUs."""
    return bool(difflib.get_close_matches(key.lower(), names, n=1, cutoff=0.75))


def _accelerator_counts(value: Any) -> dict[str, Any]:
    """Read `accelerators` as a mapping (`{V100: 2}`) or in SkyPilot's spelling (`V100:2`, `V100`)."""
    if not value:
        return {}
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, str):
        name, _, count = value.partition(":")
        name, count = name.strip(), count.strip()
        if _ACCELERATOR.match(name) and (not count or count.isdigit()):
            return {name: int(count) if count else 1}
    raise ValueError(
        f"invalid accelerators {value!r}: expected a mapping of accelerator type to count such as "
        "{V100: 2}, or one type with an optional count such as 'V100:2'"
    )


class ResourceList(SkyModel):
    """An amount of each resource; used for node capacity and allocatable."""

    cpus: float = Field(default=0, ge=0, allow_inf_nan=False)
    memory: float = Field(default=0, ge=0, allow_inf_nan=False, description="MiB")
    disk: float = Field(default=0, ge=0, allow_inf_nan=False, description="MiB")
    gpus: int = Field(default=0, ge=0)
    accelerators: dict[str, int] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_fields(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        accepted = cls.accepted_keys()
        accelerators = _accelerator_counts(data.get("accelerators"))
        problems = []
        names = sorted(cls.model_fields)
        for key in [key for key in data if key not in accepted]:
            if isinstance(key, str) and _ACCELERATOR.match(key) and not _resembles_field(key, names):
                if key in accelerators:
                    problems.append(
                        f"accelerator {key!r} is given both as a key ({data[key]!r}) and in accelerators "
                        f"({accelerators[key]!r}); keep one of them"
                    )
                    continue
                accelerators[key] = data.pop(key)
                continue
            problems.append(
                f"unknown resource '{key}'{suggest(str(key), names)}; valid resources: "
                f"{', '.join(names)}, or an accelerator type such as 'A100: 1'"
            )
        if problems:
            raise ValueError("; ".join(problems))
        if accelerators:
            data["accelerators"] = accelerators
        return data

    @field_validator("memory", "disk", mode="before")
    @classmethod
    def _parse_size(cls, value: Any, info) -> float:
        return parse_mebibytes(value, info.field_name)

    @field_validator("cpus", mode="before")
    @classmethod
    def _parse_cpus(cls, value: Any) -> float:
        return parse_cpus(value)

    @field_validator("accelerators")
    @classmethod
    def _check_accelerators(cls, accelerators: dict[str, int]) -> dict[str, int]:
        for name, count in accelerators.items():
            if count < 0:
                raise ValueError(f"invalid count {count} for accelerator {name!r}: must not be negative")
        return {name: count for name, count in accelerators.items() if count}

    def fits(self, request: "ResourceList") -> bool:
        """True when `request` fits inside this amount, accelerator types included."""
        if request.cpus > self.cpus + 1e-9 or request.memory > self.memory + 1e-9:
            return False
        if request.disk > self.disk + 1e-9 or request.gpus > self.gpus:
            return False
        return all(self.accelerators.get(name, 0) >= count for name, count in request.accelerators.items())

    def subtract(self, other: "ResourceList") -> "ResourceList":
        accelerators = dict(self.accelerators)
        for name, count in other.accelerators.items():
            accelerators[name] = max(0, accelerators.get(name, 0) - count)
        return ResourceList(
            cpus=max(0.0, self.cpus - other.cpus),
            memory=max(0.0, self.memory - other.memory),
            disk=max(0.0, self.disk - other.disk),
            gpus=max(0, self.gpus - other.gpus),
            accelerators=accelerators,
        )

    def add(self, other: "ResourceList") -> "ResourceList":
        accelerators = dict(self.accelerators)
        for name, count in other.accelerators.items():
            accelerators[name] = accelerators.get(name, 0) + count
        return ResourceList(
            cpus=self.cpus + other.cpus,
            memory=self.memory + other.memory,
            disk=self.disk + other.disk,
            gpus=self.gpus + other.gpus,
            accelerators=accelerators,
        )


class Resources(ResourceList):
    """What one replica of a Job requests. One CPU unless the manifest says otherwise."""

    cpus: float = Field(default=1, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _gpus_cover_accelerators(self) -> "Resources":
        typed = sum(self.accelerators.values())
        if typed and not self.gpus:
            self.gpus = typed
        elif typed and self.gpus != typed:
            raise ValueError(
                f"gpus is {self.gpus} but the accelerator types add up to {typed}; "
                "set gpus to their sum or leave it out"
            )
        return self
