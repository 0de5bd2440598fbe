"""Read manifests for `apply`, `create -f` and `delete -f`: files, directories or stdin, YAML or JSON.

Each document keeps where it came from (file and 1-based document index), so every error names it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from skyshift_core import manifest_yaml
from skyshift_core.cli.config import ContextNamespace
from skyshift_core.errors import InvalidError
from skyshift_core.objects import Object, kinds, parse_object
from skyshift_core.objects.base import suggest
from skyshift_core.objects.meta import DEFAULT_NAMESPACE

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
STDIN = "-"


@dataclass
class ManifestDocument:
    source: str
    # 1-based position of the document in its source, and of the item inside a List document.
    index: int
    data: dict[str, Any]
    item: int | None = None

    @property
    def where(self) -> str:
        location = f"{self.source}, document {self.index}"
        return f"{location}, item {self.item}" if self.item is not None else location


@dataclass
class ParsedManifest:
    """A validated document with the namespace it applies to (None for cluster-scoped kinds)."""

    document: ManifestDocument
    model: type[Object]
    obj: Object
    namespace: str | None

    @property
    def name(self) -> str:
        return self.obj.metadata.name


def expand_paths(paths: Sequence[str]) -> list[str]:
    """Replace each directory by its manifest files (*.yaml, *.yml, *.json, sorted by name).

    As in kubectl, one value may name several paths separated by commas (`-f a.yaml,b.yaml`),
    unless a file of that very name exists."""
    split: list[str] = []
    for path in paths:
        if "," in path and path != STDIN and not Path(path).exists():
            split.extend(part for part in path.split(",") if part)
        else:
            split.append(path)
    expanded: list[str] = []
    for path in split:
        if path == STDIN:
            expanded.append(path)
            continue
        candidate = Path(path)
        if candidate.is_dir():
            files = sorted(
                str(child) for child in candidate.iterdir() if child.suffix in MANIFEST_SUFFIXES and child.is_file()
            )
            if not files:
                raise InvalidError(f"directory {path} contains no manifest files (*.yaml, *.yml or *.json)")
            expanded.extend(files)
        elif candidate.exists():
            expanded.append(path)
        else:
            raise InvalidError(f"{path}: no such file or directory")
    return expanded


def _load_text(source: str, text: str, as_json: bool) -> list[Any]:
    try:
        if as_json:
            return [json.loads(text)]
        return list(manifest_yaml.load_all(text, source))
    except json.JSONDecodeError as error:
        raise InvalidError(f"{source}: invalid JSON: {error}") from error
    except yaml.YAMLError as error:
        raise InvalidError(f"{source}: invalid YAML: {error}") from error


def read_manifests(paths: Sequence[str], stdin: TextIO) -> list[ManifestDocument]:
    """Read every document of every path; List documents (`kind: List` or `JobList`) are flattened."""
    documents: list[ManifestDocument] = []
    for path in expand_paths(paths):
        if path == STDIN:
            source, text, as_json = "<stdin>", stdin.read(), False
        else:
            source, as_json = path, path.endswith(".json")
            try:
                text = Path(path).read_text()
            except (OSError, UnicodeDecodeError) as error:
                raise InvalidError(f"cannot read {path}: {error}") from error

        # Empty documents (a trailing `---`, a file of comments) are skipped but still counted,
        # so an index matches what the user sees in the file.
        for index, data in enumerate(_load_text(source, text, as_json), start=1):
            if data is None:
                continue
            documents.extend(_flatten(ManifestDocument(source, index, data)))
    if not documents:
        raise InvalidError(f"no objects found in {', '.join(paths)}")
    return documents


def _flatten(document: ManifestDocument) -> list[ManifestDocument]:
    data = document.data
    if not isinstance(data, dict):
        raise InvalidError(
            f"{document.where}: expected a mapping with kind, metadata and spec, got {type(data).__name__}"
        )
    kind = data.get("kind")
    is_list = isinstance(kind, str) and kind.endswith("List") and kind not in kinds() and "items" in data
    if not is_list:
        return [document]
    items = data["items"]
    if not isinstance(items, list):
        raise InvalidError(f"{document.where}: items of a {kind} must be a list")
    flattened = []
    for position, item in enumerate(items, start=1):
        entry = ManifestDocument(document.source, document.index, item, position)
        if not isinstance(item, dict):
            raise InvalidError(
                f"{entry.where}: expected a mapping with kind, metadata and spec, got {type(item).__name__}"
            )
        flattened.append(entry)
    return flattened


def parse_manifest(document: ManifestDocument, namespace: str | None) -> ParsedManifest:
    """Validate a document against its kind; InvalidError names the document and the field.

    `namespace` is the -n option: it applies to documents without a namespace and must agree with
    documents that have one. A namespace from the current context (ContextNamespace) is only a
    default, as in kubectl.
    """
    try:
        obj = parse_object(document.data)
    except InvalidError as error:
        raise InvalidError(f"{document.where}: {error.message}") from error
    model = type(obj)
    if not model.namespaced:
        return ParsedManifest(document, model, obj, None)
    own = obj.metadata.namespace
    if own and namespace and own != namespace and not isinstance(namespace, ContextNamespace):
        raise InvalidError(
            f"{document.where}: the object's namespace {own!r} does not match --namespace {namespace!r}; "
            "remove one of them or make them equal"
        )
    return ParsedManifest(document, model, obj, own or namespace or DEFAULT_NAMESPACE)


def manifest_target(document: ManifestDocument, namespace: str | None) -> tuple[type[Object], str, str | None]:
    """Return the kind, name and namespace a document names, without validating the rest of it.

    `delete -f` uses this, so a manifest that no longer validates still names what to delete.
    """
    data = document.data
    kind = data.get("kind")
    model = kinds().get(kind) if isinstance(kind, str) else None
    if model is None:
        names = sorted(kinds())
        raise InvalidError(
            f"{document.where}: unknown kind {kind!r}{suggest(str(kind), names)}; known kinds: {', '.join(names)}"
        )
    metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidError(f"{document.where}: metadata.name is missing")
    if not model.namespaced:
        return model, name, None
    own = metadata.get("namespace")
    if own and namespace and own != namespace and not isinstance(namespace, ContextNamespace):
        raise InvalidError(
            f"{document.where}: the object's namespace {own!r} does not match --namespace {namespace!r}; "
            "remove one of them or make them equal"
        )
    return model, name, own or namespace or DEFAULT_NAMESPACE


def parse_manifests(
    documents: Sequence[ManifestDocument], namespace: str | None
) -> tuple[list[ParsedManifest], list[str]]:
    """Validate every document; return the parsed ones and one error message per invalid one."""
    parsed: list[ParsedManifest] = []
    errors: list[str] = []
    for document in documents:
        try:
            parsed.append(parse_manifest(document, namespace))
        except InvalidError as error:
            errors.append(error.message)
    return parsed, errors


def request_body(manifest: ParsedManifest) -> dict[str, Any]:
    """Return the document as written, with its namespace filled in; camelCase keys are sent unchanged."""
    body = dict(manifest.document.data)
    metadata = dict(body.get("metadata") or {})
    if manifest.namespace is not None:
        metadata["namespace"] = manifest.namespace
    body["metadata"] = metadata
    return body
