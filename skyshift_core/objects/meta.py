"""Kubernetes-shaped metadata, conditions and the generic object envelope shared by every kind."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from skyshift_core.objects.base import SkyModel
from skyshift_core.objects.selectors import validate_label_key, validate_label_value

API_VERSION = "v1"
DEFAULT_NAMESPACE = "default"
MAX_NAME_LENGTH = 63

# DNS-1123 label, as Kubernetes requires for namespace names and most object names.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def validate_name(name: str, what: str = "name") -> str:
    """Check a DNS-1123 label of at most 63 characters; the error says how to fix it."""
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"invalid {what} {name!r}: must be at most {MAX_NAME_LENGTH} characters, got {len(name)}")
    if not _DNS_LABEL.match(name):
        raise ValueError(
            f"invalid {what} {name!r}: must consist of lower case letters, digits and '-', "
            "and start and end with a letter or digit (for example 'my-job-1')"
        )
    return name


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


# Kubernetes' limit on the total size of an object's annotations (TotalAnnotationSizeLimitB).
MAX_ANNOTATIONS_BYTES = 256 * 1024

class ObjectMeta(SkyModel):
    """Identity and bookkeeping of an object; uid, resource_version, generation and
    creation_timestamp are set by the server and ignored when a client sends them on create."""

    name: str
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    uid: str | None = None
    resource_version: str | None = None
    generation: int = 0
    creation_timestamp: datetime | None = None
    deletion_timestamp: datetime | None = None
    # Names of the controllers that must finish their cleanup before the object goes, as in
    # Kubernetes. Deleting an object that has finalizers sets deletion_timestamp, and the object
    # is removed when an update leaves the list empty.
    finalizers: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        return validate_name(name)

    @field_validator("namespace")
    @classmethod
    def _check_namespace(cls, namespace: str | None) -> str | None:
        return None if namespace is None else validate_name(namespace, "namespace")

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        for key, value in labels.items():
            validate_label_key(key)
            validate_label_value(value)
        return labels

    @field_validator("finalizers")
    @classmethod
    def _check_finalizers(cls, finalizers: list[str]) -> list[str]:
        for finalizer in finalizers:
            validate_label_key(finalizer, "finalizer")
        return finalizers

    @field_validator("annotations")
    @classmethod
    def _check_annotations(cls, annotations: dict[str, str]) -> dict[str, str]:
        size = 0
        for key, value in annotations.items():
            validate_label_key(key, "annotation key")
            size += len(key.encode()) + len(value.encode())
        if size > MAX_ANNOTATIONS_BYTES:
            raise ValueError(
                f"annotations take {size} bytes; the limit is {MAX_ANNOTATIONS_BYTES} (256 KiB, as in Kubernetes) "
                "for all keys and values together; keep large data elsewhere and refer to it"
            )
        return annotations


class Condition(SkyModel):
    """One observation about an object, as in Kubernetes: a type with a status and a reason."""

    type: str
    status: Literal["True", "False", "Unknown"] = "True"
    reason: str = ""
    message: str = ""
    last_transition_time: datetime | None = None
    observed_generation: int | None = None


def set_condition(conditions: list[Condition], new: Condition) -> list[Condition]:
    """Return conditions with `new` replacing the one of the same type.

    The transition time is kept while the status stays the same, so it records when the
    condition last flipped rather than when it was last written.
    """
    now = utc_now()
    for index, old in enumerate(conditions):
        if old.type != new.type:
            continue
        unchanged = old.status == new.status and old.last_transition_time is not None
        time = old.last_transition_time if unchanged else (new.last_transition_time or now)
        updated = list(conditions)
        updated[index] = new.model_copy(update={"last_transition_time": time})
        return updated
    return [*conditions, new.model_copy(update={"last_transition_time": new.last_transition_time or now})]


class EmptySpec(SkyModel):
    pass


class EmptyStatus(SkyModel):
    pass


class Object(SkyModel):
    """The envelope of every kind: `kind`, `api_version`, `metadata`, then `spec` and `status`.

    Subclasses set `kind` to a Literal and may narrow `spec` and `status`. The class variables
    describe how the kind is addressed in the API and the store.
    """

    plural: ClassVar[str] = ""
    singular: ClassVar[str] = ""
    short_names: ClassVar[tuple[str, ...]] = ()
    namespaced: ClassVar[bool] = True
    # Columns shown by `skyshift get` beside NAME (and NAMESPACE when listing all namespaces).
    table_columns: ClassVar[tuple[str, ...]] = ("AGE",)

    api_version: str = API_VERSION
    kind: str
    metadata: ObjectMeta

    @field_validator("api_version")
    @classmethod
    def _check_api_version(cls, api_version: str) -> str:
        if api_version not in (API_VERSION, f"skyshift/{API_VERSION}"):
            raise ValueError(
                f"unsupported api_version {api_version!r}: expected '{API_VERSION}' or 'skyshift/{API_VERSION}'"
            )
        return API_VERSION

    def table_row(self) -> dict[str, str]:
        """Values for `table_columns` other than AGE (which the CLI computes)."""
        return {}
