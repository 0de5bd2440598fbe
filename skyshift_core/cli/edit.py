"""`label`, `annotate`, `patch` and `scale`: change objects in place with one patch request per object, as kubectl does.

Every argument is checked before the first request, so a typo in a key or in a patch changes nothing.
"""

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from skyshift_core import manifest_yaml
from skyshift_core.cli.common import (
    NamespaceOption,
    ServerOption,
    client_for,
    not_found_message,
    object_ref,
    to_yaml,
)
from skyshift_core.cli.targets import Target, parse_targets
from skyshift_core.client import SkyShiftClient
from skyshift_core.errors import InvalidError, NotFoundError, ServerUnreachableError, SkyShiftError
from skyshift_core.objects import Object
from skyshift_core.objects.meta import DEFAULT_NAMESPACE
from skyshift_core.objects.selectors import validate_label_key, validate_label_value

EDIT_OUTPUT_FORMATS = ("name", "yaml", "json")
PATCH_TYPES = ("merge", "json")

EditOutputOption = Annotated[
    str | None,
    typer.Option(
        "--output",
        "-o",
        help="Output format: name prints only job.skyshift/NAME, yaml or json the changed object. "
        "Default: NAME and the outcome.",
    ),
]


@dataclass(frozen=True)
class MetadataMap:
    """The differences between `label` and `annotate`: the metadata field, its words and its rules."""

    field: str
    noun: str
    command: str
    past_tense: str
    # The outcome printed when the command only removed entries. kubectl prints "unlabeled" but has no "unannotated".
    removed_tense: str
    check_value: Callable[[str], str] | None
    # Without --overwrite, kubectl's label rejects only a new value for an existing key, but its annotate
    # rejects every existing key, even when the value stays the same (label.go and annotate.go in kubectl).
    reject_same_value: bool


LABELS = MetadataMap(
    field="labels",
    noun="label",
    command="label",
    past_tense="labeled",
    removed_tense="unlabeled",
    check_value=validate_label_value,
    reject_same_value=False,
)
ANNOTATIONS = MetadataMap(
    field="annotations",
    noun="annotation",
    command="annotate",
    past_tense="annotated",
    removed_tense="annotated",
    check_value=None,
    reject_same_value=True,
)


@dataclass
class MetadataChanges:
    """The KEY=VALUE and KEY- arguments of one `label` or `annotate` command."""

    values: dict[str, str] = field(default_factory=dict)
    removals: list[str] = field(default_factory=list)

    def patch(self, map_: MetadataMap, resource_version: str | None) -> dict[str, Any]:
        """Return the JSON merge patch of these changes; null deletes a key in a merge patch (RFC 7396)."""
        entries: dict[str, str | None] = dict(self.values)
        entries.update({key: None for key in self.removals})
        metadata: dict[str, Any] = {map_.field: entries}
        if resource_version:
            # A resource_version in a patch is a precondition: the server rejects the patch with a
            # conflict when the object has another version.
            metadata["resource_version"] = resource_version
        return {"metadata": metadata}


@dataclass(frozen=True)
class Selection:
    """The objects of a command: named, picked by a label selector or all of a kind, in one namespace."""

    targets: list[Target]
    namespace: str | None
    selector: str | None = None

    def namespace_of(self, model: type[Object]) -> str | None:
        return (self.namespace or DEFAULT_NAMESPACE) if model.namespaced else None


# ---- arguments ------------------------------------------------------------------------------


def _is_change(argument: str) -> bool:
    """Return whether an argument is KEY=VALUE or KEY-, the rule kubectl uses to separate changes from objects."""
    return "=" in argument or (argument.endswith("-") and argument != "-")


def split_arguments(arguments: Sequence[str], map_: MetadataMap) -> tuple[list[str], list[str]]:
    """Split positional arguments into the object arguments and the KEY=VALUE and KEY- changes after them."""
    objects: list[str] = []
    changes: list[str] = []
    for argument in arguments:
        if _is_change(argument):
            changes.append(argument)
        elif changes:
            raise InvalidError(
                f"{argument!r} comes after the {map_.noun} changes: name every object before the first "
                f"KEY=VALUE or KEY-, as in 'skyshift {map_.command} job a b team=ml'"
            )
        else:
            objects.append(argument)
    if not objects:
        raise InvalidError(
            f"no object given: pass KIND NAME... or KIND/NAME... before the {map_.noun}s, "
            f"as in 'skyshift {map_.command} cluster site-a cost=10'"
        )
    if not changes:
        raise InvalidError(
            f"no {map_.noun} change given: pass KEY=VALUE to set a {map_.noun} or KEY- to remove one, "
            f"as in 'skyshift {map_.command} cluster site-a cost=10'"
        )
    return objects, changes


def _check_key(map_: MetadataMap, key: str, argument: str) -> None:
    try:
        validate_label_key(key)
    except ValueError as error:
        # Annotation keys follow the label key rules (ObjectMeta), so the message names a label key.
        rule = "" if map_ is LABELS else "; annotation keys follow the rules of label keys"
        raise InvalidError(f"{error} (argument {argument!r}){rule}; nothing was {map_.past_tense}") from error


def parse_changes(arguments: Sequence[str], map_: MetadataMap) -> MetadataChanges:
    """Parse KEY=VALUE and KEY- arguments and check them with ObjectMeta's rules before anything is sent."""
    changes = MetadataChanges()
    for argument in arguments:
        if "=" in argument:
            key, _, value = argument.partition("=")
            _check_key(map_, key, argument)
            if map_.check_value is not None:
                try:
                    map_.check_value(value)
                except ValueError as error:
                    raise InvalidError(f"{error} (argument {argument!r}); nothing was {map_.past_tense}") from error
            earlier = changes.values.get(key)
            if earlier is not None and earlier != value:
                raise InvalidError(
                    f"{map_.noun} {key!r} is given twice, as {key}={earlier} and {argument}; keep one of them"
                )
            changes.values[key] = value
        else:
            key = argument[:-1]
            _check_key(map_, key, argument)
            if key not in changes.removals:
                changes.removals.append(key)

    both = [key for key in changes.removals if key in changes.values]
    if both:
        raise InvalidError(
            f"{map_.noun} {both[0]!r} is both set and removed; pass either {both[0]}=VALUE or {both[0]}-"
        )
    return changes


def _check_output(output: str | None) -> None:
    if output is not None and output not in EDIT_OUTPUT_FORMATS:
        raise InvalidError(f"invalid output format {output!r}: expected one of {', '.join(EDIT_OUTPUT_FORMATS)}")


def check_selection(
    targets: list[Target], selector: str | None, select_all: bool, resource_version: str | None, command: str
) -> None:
    """Check that the objects are picked in exactly one way, and that --resource-version names one object."""
    named = any(target.names for target in targets)
    if selector and select_all:
        raise InvalidError("--all cannot be combined with --selector: --all already picks every object of the kind")
    if named and (selector or select_all):
        raise InvalidError(
            "names cannot be combined with --selector or --all; pass either names or one of those options"
        )
    if not named and not selector and not select_all:
        kinds = ",".join(target.model.plural for target in targets)
        raise InvalidError(
            f"no objects picked: name them (skyshift {command} {targets[0].model.singular} NAME ...), "
            f"or pick them with -l SELECTOR or --all (skyshift {command} {kinds} --all ...)"
        )
    if resource_version and sum(len(target.names) for target in targets) != 1:
        raise InvalidError(
            "--resource-version works with exactly one object, named as KIND NAME or KIND/NAME, "
            "because each object has its own resource version"
        )


# ---- sending --------------------------------------------------------------------------------


# Objects as the API returns them, each with its model.
ObjectList = list[tuple[type[Object], dict[str, Any]]]


def fetch_objects(client: SkyShiftClient, selection: Selection) -> tuple[ObjectList, int]:
    """Get the named objects, or list those the selector picks; return them and how many names were not found.

    Each missing name prints an error, as `get` does; the other objects are still returned.
    """
    found: ObjectList = []
    missing = 0
    for target in selection.targets:
        model = target.model
        namespace = selection.namespace_of(model)
        if not target.names:
            listing = client.list_all(model, namespace, label_selector=selection.selector)
            found.extend((model, item) for item in listing["items"])
            continue
        for name in target.names:
            try:
                found.append((model, client.get(model, name, namespace)))
            except NotFoundError:
                typer.echo(f"Error: {not_found_message(model, name, namespace)}", err=True)
                missing += 1
    return found, missing


class ResultPrinter:
    """Prints each changed object as kubectl does: `job.skyshift/NAME labeled`, its name, YAML or JSON."""

    def __init__(self, output: str | None):
        self.output = output
        self.printed = 0

    def print(self, model: type[Object], obj: dict[str, Any], outcome: str) -> None:
        ref = object_ref(model, obj["metadata"]["name"])
        if self.output == "name":
            typer.echo(ref)
        elif self.output == "yaml":
            # Several objects print as one YAML stream, so `---` goes between them.
            separator = "---\n" if self.printed else ""
            typer.echo(separator + to_yaml(obj).rstrip("\n"))
        elif self.output == "json":
            typer.echo(json.dumps(obj, indent=2))
        else:
            typer.echo(f"{ref} {outcome}")
        self.printed += 1


def each_object(
    client: SkyShiftClient,
    objects: ObjectList,
    change: Callable[[type[Object], dict[str, Any]], tuple[dict[str, Any], str]],
    printer: ResultPrinter,
) -> int:
    """Run `change` on each object and print its result; return how many failed.

    One object's error prints `Error: job.skyshift/NAME: message` and the others go on, as in
    kubectl. An unreachable server stops the command, because every later request would fail too.
    """
    failures = 0
    for model, current in objects:
        ref = object_ref(model, current["metadata"]["name"])
        try:
            updated, outcome = change(model, current)
        except ServerUnreachableError:
            raise
        except SkyShiftError as error:
            typer.echo(f"Error: {ref}: {error.message}", err=True)
            failures += 1
            continue
        printer.print(model, updated, outcome)
    return failures


def _object_namespace(model: type[Object], obj: dict[str, Any]) -> str | None:
    return obj["metadata"].get("namespace") if model.namespaced else None


# ---- label and annotate ---------------------------------------------------------------------


def change_metadata(
    client: SkyShiftClient,
    map_: MetadataMap,
    model: type[Object],
    current: dict[str, Any],
    changes: MetadataChanges,
    overwrite: bool,
    resource_version: str | None,
) -> tuple[dict[str, Any], str]:
    """Send one merge patch with the changes; return the patched object and its outcome, such as `labeled`.

    Raises InvalidError, before sending anything, when the changes would replace existing values
    and `overwrite` is false.
    """
    name = current["metadata"]["name"]
    before: dict[str, str] = dict(current["metadata"].get(map_.field) or {})
    for key in changes.removals:
        if key not in before:
            typer.echo(f'Warning: {map_.noun} "{key}" not found on {object_ref(model, name)}', err=True)

    if not overwrite:
        existing = [
            f"'{key}' already has a value ({before[key]})"
            for key, value in changes.values.items()
            if key in before and (map_.reject_same_value or before[key] != value)
        ]
        if existing:
            subject = "it" if len(existing) == 1 else "them"
            raise InvalidError(
                f"{', '.join(existing)}, and --overwrite is false; pass --overwrite to replace {subject}"
            )

    # Without --resource-version the patch carries no precondition, as in kubectl. So a value that
    # another writer sets between the read above and this patch is replaced even without --overwrite.
    updated = client.patch(model, name, changes.patch(map_, resource_version), _object_namespace(model, current))
    after: dict[str, str] = updated["metadata"].get(map_.field) or {}
    if after == before:
        return updated, f"not {map_.past_tense}"
    if after.items() <= before.items():
        return updated, map_.removed_tense
    return updated, map_.past_tense


def edit_metadata(
    ctx: typer.Context,
    map_: MetadataMap,
    arguments: list[str],
    namespace: str | None,
    selector: str | None,
    select_all: bool,
    overwrite: bool,
    resource_version: str | None,
    output: str | None,
    server: str | None,
) -> None:
    """Run `label` or `annotate`: check every argument, then patch each picked object once."""
    _check_output(output)
    object_arguments, change_arguments = split_arguments(arguments, map_)
    changes = parse_changes(change_arguments, map_)
    targets = parse_targets(object_arguments, map_.command)
    check_selection(targets, selector, select_all, resource_version, map_.command)
    selection = Selection(targets, namespace, selector)

    def change(model: type[Object], current: dict[str, Any]) -> tuple[dict[str, Any], str]:
        return change_metadata(client, map_, model, current, changes, overwrite, resource_version)

    with client_for(ctx, server) as client:
        objects, failures = fetch_objects(client, selection)
        if not objects and not failures:
            namespaced = any(target.model.namespaced for target in targets)
            where = f" in {namespace or DEFAULT_NAMESPACE} namespace" if namespaced else ""
            typer.echo(f"No resources found{where}.", err=True)
            return
        failures += each_object(client, objects, change, ResultPrinter(output))
    if failures:
        raise typer.Exit(1)


def _metadata_command(map_: MetadataMap) -> Callable[..., None]:
    """Build the `label` or `annotate` command; both take the same arguments and options."""
    noun = map_.noun
    value_rule = (
        "Keys and values follow the label rules of metadata.labels."
        if map_ is LABELS
        else "Keys follow the label key rules; values are free text."
    )

    def command(
        ctx: typer.Context,
        arguments: Annotated[
            list[str],
            typer.Argument(
                metavar="KIND NAME... KEY=VALUE KEY-",
                help=f"The objects (KIND NAME..., KIND,KIND NAME... or KIND/NAME...), then the {noun}s: "
                f"KEY=VALUE sets a {noun}, KEY- removes one. {value_rule}",
                show_default=False,
            ),
        ],
        namespace: NamespaceOption = None,
        selector: Annotated[
            str | None,
            typer.Option(
                "--selector",
                "-l",
                help="Change the objects of the kinds that match this label selector, such as app=web.",
            ),
        ] = None,
        select_all: Annotated[
            bool, typer.Option("--all", help="Change every object of the kinds in the namespace.")
        ] = False,
        overwrite: Annotated[
            bool,
            typer.Option(
                "--overwrite",
                help=f"Allow replacing the value of an existing {noun}. Without it, such a change is an error.",
            ),
        ] = False,
        resource_version: Annotated[
            str | None,
            typer.Option(
                "--resource-version",
                help="Change the object only if its metadata.resource_version is still this one; "
                "one named object only.",
            ),
        ] = None,
        output: EditOutputOption = None,
        server: ServerOption = None,
    ) -> None:
        edit_metadata(
            ctx, map_, arguments, namespace, selector, select_all, overwrite, resource_version, output, server
        )

    if map_ is LABELS:
        command.__doc__ = (
            "Add, change or remove labels of objects, as kubectl label does.\n\n"
            "skyshift label cluster site-a cost=10 adds a label, --overwrite allows changing its value, "
            "and skyshift label cluster site-a cost- removes it."
        )
    else:
        command.__doc__ = (
            "Add, change or remove annotations of objects, as kubectl annotate does.\n\n"
            "skyshift annotate job train owner=ada adds an annotation, --overwrite allows replacing an "
            "existing one, and skyshift annotate job train owner- removes it."
        )
    return command


# ---- patch ----------------------------------------------------------------------------------


def _json_type(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    return f"a {type(value).__name__} ({value!r})"


def read_patch(patch_text: str | None, patch_file: str | None) -> tuple[str, str]:
    """Return the patch text from -p or --patch-file (- for stdin) and where it came from, for messages."""
    if (patch_text is None) == (patch_file is None):
        raise InvalidError(
            "pass the patch with exactly one of -p PATCH and --patch-file FILE, "
            """as in: skyshift patch job train -p '{"spec": {"replicas": 2}}'"""
        )
    if patch_text is not None:
        return patch_text, "-p"
    if patch_file == "-":
        return sys.stdin.read(), "stdin"
    try:
        return Path(patch_file).read_text(), str(patch_file)
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidError(f"cannot read the patch file {patch_file}: {error}") from error


def parse_patch(text: str, source: str, patch_type: str) -> dict[str, Any] | list[Any]:
    """Parse a patch written in JSON or YAML and check that its shape fits `patch_type`."""
    if patch_type not in PATCH_TYPES:
        strategic = (
            "; SkyShift has no strategic merge patch, so use merge, which replaces lists whole instead of "
            "merging their items"
            if patch_type == "strategic"
            else ""
        )
        raise InvalidError(f"invalid patch type {patch_type!r}: expected merge or json{strategic}")
    if not text.strip():
        raise InvalidError(f"the patch from {source} is empty: pass a JSON or YAML document")

    # JSON text goes to the JSON parser, because YAML 1.1 reads some JSON differently: `1e5` as a
    # string, and `\ud83d\ude00` escapes as an error. Text that is not JSON is read as YAML.
    try:
        document = json.loads(text)
    except ValueError:
        try:
            document = manifest_yaml.load(text)
        except yaml.YAMLError as error:
            raise InvalidError(f"the patch from {source} is neither valid JSON nor valid YAML: {error}") from error

    if patch_type == "merge" and not isinstance(document, dict):
        raise InvalidError(
            f"a merge patch must be a mapping, like {{\"spec\": {{\"replicas\": 2}}}}, but the patch from {source} "
            f"is {_json_type(document)}; for a list of operations pass --type json"
        )
    if patch_type == "json":
        example = '[{"op": "replace", "path": "/spec/replicas", "value": 2}]'
        if not isinstance(document, list):
            raise InvalidError(
                f"a JSON patch (--type json) must be a list of operations, like {example}, "
                f"but the patch from {source} is {_json_type(document)}"
            )
        for index, operation in enumerate(document):
            if not isinstance(operation, dict):
                raise InvalidError(
                    f"operation {index} of the JSON patch from {source} is {_json_type(operation)}: "
                    f"each operation must be a mapping with op and path, like {example}"
                )
    return document


def patch(
    ctx: typer.Context,
    kind: Annotated[
        str,
        typer.Argument(help="Kind: plural, singular, short name or kind; several separated by commas; or KIND/NAME."),
    ],
    names: Annotated[
        list[str] | None, typer.Argument(help="Names of the objects to patch, or more KIND/NAME arguments.")
    ] = None,
    patch_text: Annotated[
        str | None,
        typer.Option("--patch", "-p", help="The patch, as JSON or YAML text.", show_default=False),
    ] = None,
    patch_file: Annotated[
        str | None,
        typer.Option("--patch-file", help="File that contains the patch, as JSON or YAML; - reads stdin."),
    ] = None,
    patch_type: Annotated[
        str,
        typer.Option(
            "--type",
            help="merge: an RFC 7396 JSON merge patch, a mapping whose null values delete keys. "
            "json: an RFC 6902 JSON patch, a list of operations. kubectl's default, strategic, "
            "does not exist in SkyShift; merge is the closest, but it replaces lists whole.",
        ),
    ] = "merge",
    namespace: NamespaceOption = None,
    output: EditOutputOption = None,
    server: ServerOption = None,
) -> None:
    """Change fields of objects with a JSON merge patch or a JSON patch, as kubectl patch does."""
    _check_output(output)
    targets = parse_targets([kind, *(names or [])], "patch")
    if not all(target.names for target in targets):
        raise InvalidError(
            "nothing to patch: pass KIND NAME... or KIND/NAME..., "
            """as in: skyshift patch job train -p '{"spec": {"replicas": 2}}'"""
        )
    text, source = read_patch(patch_text, patch_file)
    document = parse_patch(text, source, patch_type)

    def change(model: type[Object], current: dict[str, Any]) -> tuple[dict[str, Any], str]:
        name = current["metadata"]["name"]
        updated = client.patch(model, name, document, _object_namespace(model, current), patch_type=patch_type)
        # The server keeps the resource_version of a write that changes nothing.
        unchanged = updated["metadata"]["resource_version"] == current["metadata"]["resource_version"]
        return updated, "patched (no change)" if unchanged else "patched"

    with client_for(ctx, server) as client:
        objects, failures = fetch_objects(client, Selection(targets, namespace))
        failures += each_object(client, objects, change, ResultPrinter(output))
    if failures:
        raise typer.Exit(1)


# ---- scale ----------------------------------------------------------------------------------


def scale(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="Kind (jobs, job, jb) or KIND/NAME (job/train).")],
    names: Annotated[list[str] | None, typer.Argument(help="Names of the Jobs, or more KIND/NAME arguments.")] = None,
    replicas: Annotated[
        int, typer.Option("--replicas", min=1, help="The new number of replicas.", show_default=False)
    ] = ...,  # type: ignore[assignment]
    current_replicas: Annotated[
        int | None,
        typer.Option(
            "--current-replicas",
            min=1,
            help="Scale only a Job that has this many replicas now; others fail with an error.",
        ),
    ] = None,
    namespace: NamespaceOption = None,
    output: EditOutputOption = None,
    server: ServerOption = None,
) -> None:
    """Set the number of replicas of Jobs, as kubectl scale does."""
    _check_output(output)
    targets = parse_targets([kind, *(names or [])], "scale")
    for target in targets:
        spec = target.model.model_fields.get("spec")
        if spec is None or "replicas" not in getattr(spec.annotation, "model_fields", {}):
            raise InvalidError(f"kind {target.model.__name__} has no replicas to scale; skyshift scale works on Jobs")
    if not all(target.names for target in targets):
        raise InvalidError("nothing to scale: pass KIND NAME... or KIND/NAME..., as in: skyshift scale job train --replicas 4")

    def change(model: type[Object], current: dict[str, Any]) -> tuple[dict[str, Any], str]:
        now = current.get("spec", {}).get("replicas")
        if current_replicas is not None and now != current_replicas:
            raise InvalidError(f"expected --current-replicas {current_replicas}, but spec.replicas is {now}; nothing changed")
        # The resource_version makes the check above and the write one atomic step.
        document = {"metadata": {"resource_version": current["metadata"]["resource_version"]}, "spec": {"replicas": replicas}}
        updated = client.patch(model, current["metadata"]["name"], document, _object_namespace(model, current))
        return updated, "scaled (no change)" if now == replicas else "scaled"

    with client_for(ctx, server) as client:
        objects, failures = fetch_objects(client, Selection(targets, namespace))
        failures += each_object(client, objects, change, ResultPrinter(output))
    if failures:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("label")(_metadata_command(LABELS))
    app.command("annotate")(_metadata_command(ANNOTATIONS))
    app.command("patch")(patch)
    app.command("scale")(scale)
