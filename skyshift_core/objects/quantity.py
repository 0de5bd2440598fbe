"""Parsing of CPU counts and of memory and disk sizes: plain numbers are MiB, strings may carry a unit.

SkyShift stores sizes in MiB, the unit Slurm calls "MB" in `--mem`, so the original SkyShift
manifests that wrote `memory: 128` keep their meaning. Strings are Kubernetes quantities: `512Mi`
and `1.5Gi` are binary, `2G` and `512M` decimal. Slurm reads its `16G` as binary, so Slurm users
write `16Gi` for the same amount.
"""

from __future__ import annotations

import re

_BYTES_PER_UNIT = {
    "": 2**20,  # A bare number is MiB.
    "k": 10**3,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
    "TiB": 2**40,
}

_QUANTITY = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$")
_CPUS = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)(m?)\s*$")


def parse_cpus(value: object, field: str = "cpus") -> float:
    """Convert a CPU count to a number: `2`, `0.5`, or Kubernetes' millicores such as `'500m'`.

    Raises ValueError naming the value and the accepted forms.
    """
    expected = "expected a number of CPUs such as 2 or 0.5, or millicores such as '500m'"
    if isinstance(value, bool):
        raise ValueError(f"invalid {field} {value!r}: {expected}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"invalid {field} {value!r}: must not be negative")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"invalid {field} {value!r}: {expected}")
    match = _CPUS.match(value)
    if not match:
        raise ValueError(f"invalid {field} {value!r}: {expected}")
    number = float(match.group(1))
    return number / 1000 if match.group(2) else number


def parse_mebibytes(value: object, field: str = "size") -> float:
    """Convert a number (MiB) or a quantity string such as `512Mi` or `2G` to MiB.

    Raises ValueError naming the value and the accepted forms.
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid {field} {value!r}: expected a number of MiB or a quantity like '512Mi' or '2G'")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"invalid {field} {value!r}: must not be negative")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"invalid {field} {value!r}: expected a number of MiB or a quantity like '512Mi' or '2G'")
    match = _QUANTITY.match(value)
    if not match or match.group(2) not in _BYTES_PER_UNIT:
        units = ", ".join(unit for unit in _BYTES_PER_UNIT if unit)
        hint = _unit_hint(match.group(1), match.group(2)) if match else ""
        raise ValueError(
            f"invalid {field} {value!r}: expected a number of MiB or a number with one of the units {units}{hint}"
        )
    number = float(match.group(1))
    return number * _BYTES_PER_UNIT[match.group(2)] / 2**20


def _unit_hint(number: str, unit: str) -> str:
    """Suggest the units that `unit` may mean when only its letter case is wrong (`gb`, `g`, `mi`)."""
    prefix = unit[:1].upper()
    if prefix not in "KMGTP" or unit[1:].lower() not in ("", "b", "i", "ib"):
        return ""
    binary, decimal = f"{number}{prefix}i", f"{number}{prefix}"
    return f" (did you mean '{binary}', binary as Slurm reads {decimal}, or '{decimal}', decimal?)"


def format_mebibytes(mebibytes: float) -> str:
    """Render MiB compactly for tables: 512Mi, 2Gi, 1.5Ti."""
    for unit, size in (("Ti", 2**20), ("Gi", 2**10)):
        if mebibytes >= size:
            amount = mebibytes / size
            return f"{amount:g}{unit}" if amount == round(amount, 2) else f"{amount:.2f}{unit}"
    return f"{mebibytes:g}Mi"
