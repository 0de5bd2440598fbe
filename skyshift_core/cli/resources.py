"""Object commands in kubectl's manner: apply, create, get, describe and delete."""

import copy
import json
import sys
import time
from collections.abc import Callable
from typing import Annotated, Any

import typer

from skyshift_core.cli.common import (
    NamespaceOption,
    ServerOption,
    client_for,
    kind_name,
    not_found_message,
    object_ref,
    to_yaml,
)
from skyshift_core.cli.describe import describe_object, related_events
from skyshift_core.cli.manifests import (
    ParsedManifest,
    manifest_target,
    parse_manifests,
    read_manifests,
    request_body,
)
from skyshift_core.cli.tables import Table, object_headers, object_row
from skyshift_core.client import SkyShiftClient, resolve_model
from skyshift_core.errors import (
    AlreadyExistsError,
    ConflictError,
    GoneError,
    InvalidError,
    NotFoundError,
    ServerUnreachableError,
    SkyShiftError,
    UnavailableError,
)
from skyshift_core.objects import Namespace, Object
from skyshift_core.objects.meta import DEFAULT_NAMESPACE

# Attempts of one apply when another writer changes the object between our read and our write.
APPLY_ATTEMPTS = 5
OUTPUT_FORMATS = ("wide", "yaml", "json", "name")
# Seconds to wait before watching again after a watch stream was cut.
WATCH_RETRY_DELAY = 1.0

FilesOption = Annotated[
    list[str] | None,
    typer.Option("--filename", "-f", help="Manifest file, directory of *.yaml/*.yml/*.json files, or - for stdin."),
]


def _print_errors(messages: list[str]) -> None:
    for message in messages:
        typer.echo(f"Error: {message}", err=True)


def _load(files: list[str], namespace: str | None) -> list[ParsedManifest]:
    """Read and validate every document before anything is sent, so a bad file changes nothing."""
    documents = read_manifests(files, sys.stdin)
    parsed, errors = parse_manifests(documents, namespace)
    if errors:
        _print_errors(errors)
        raise typer.Exit(1)
    return parsed


# ---- apply ----------------------------------------------------------------------------------


def apply_manifest(client: SkyShiftClient, manifest: ParsedManifest) -> str:
    """Create the object or replace it, keeping its status; return created, configured or unchanged.

    A replace is a PUT of the manifest carrying the current resource_version, so a concurrent write
    fails it with a conflict and the read-and-replace is tried again.
    """
    model, name, namespace = manifest.model, manifest.name, manifest.namespace
    for _ in range(APPLY_ATTEMPTS):
        try:
            current = client.get(model, name, namespace)
        except NotFoundError:
            try:
                client.create(request_body(manifest), namespace)
                return "created"
            except AlreadyExistsError:
                # Another writer created it since our read: apply again as an update.
                continue

        body = copy.deepcopy(request_body(manifest))
        metadata = body["metadata"]
        metadata.pop("resourceVersion", None)
        metadata["resource_version"] = current["metadata"]["resource_version"]
        if "status" in current:
            body["status"] = current["status"]
        try:
            updated = client.update(body, namespace)
        except ConflictError:
            continue
        unchanged = updated["metadata"]["resource_version"] == current["metadata"]["resource_version"]
        return "unchanged" if unchanged else "configured"
    raise ConflictError(
        f"{object_ref(model, name)} changed {APPLY_ATTEMPTS} times while it was being applied; "
        "another writer keeps modifying it, apply again later"
    )


def apply(
    ctx: typer.Context,
    files: FilesOption = None,
    namespace: NamespaceOption = None,
    server: ServerOption = None,
) -> None:
    """Create or update the objects in manifests (several YAML documents per file, JSON too)."""
    if not files:
        raise InvalidError("no manifest given: pass -f FILE, -f DIRECTORY or -f - for stdin")
    _each_manifest(ctx, server, _load(files, namespace), apply_manifest)


def _each_manifest(
    ctx: typer.Context,
    server: str | None,
    manifests: list[ParsedManifest],
    operate: Callable[[SkyShiftClient, ParsedManifest], str],
) -> None:
    """Run `operate` on each manifest and print `<ref> <outcome>` or the error with its document.

    One manifest's error does not stop the others; the command exits 1 when any failed."""
    failures = 0
    with client_for(ctx, server) as client:
        for manifest in manifests:
            ref = object_ref(manifest.model, manifest.name)
            try:
                outcome = operate(client, manifest)
            except ServerUnreachableError:
                raise
            except SkyShiftError as error:
                typer.echo(f"Error: {manifest.document.where} ({ref}): {error.message}", err=True)
                failures += 1
                continue
            typer.echo(f"{ref} {outcome}")
    if failures:
        raise typer.Exit(1)


# ---- create ---------------------------------------------------------------------------------

create_app = typer.Typer(invoke_without_command=True, no_args_is_help=False)


@create_app.callback()
def create(
    ctx: typer.Context,
    files: FilesOption = None,
    namespace: NamespaceOption = None,
    server: ServerOption = None,
) -> None:
    """Create objects from manifests (-f), failing for objects that exist; or create a namespace."""
    if ctx.invoked_subcommand is not None:
        if files:
            raise InvalidError(f"-f cannot be combined with 'create {ctx.invoked_subcommand}'")
        return
    if not files:
        typer.echo(ctx.get_help())
        raise typer.Exit(2)

    def create_one(client: SkyShiftClient, manifest: ParsedManifest) -> str:
        client.create(request_body(manifest), manifest.namespace)
        return "created"

    _each_manifest(ctx, server, _load(files, namespace), create_one)


@create_app.command("namespace")
def create_namespace(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Name of the new namespace.")],
    server: ServerOption = None,
) -> None:
    """Create a namespace."""
    with client_for(ctx, server) as client:
        client.create({"kind": "Namespace", "metadata": {"name": name}})
    typer.echo(f"{object_ref(Namespace, name)} created")


# ---- get ------------------------------------------------------------------------------------


class _Printer:
    """Prints objects for `get` in the chosen output format, once or event by event while watching."""

    def __init__(self, model: type[Object], output: str | None, namespace_column: bool):
        self.model = model
        self.output = output
        self.namespace_column = namespace_column
        self.table = Table(object_headers(model, namespace_column=namespace_column, wide=output == "wide"))
        self.printed = 0

    def row(self, item: dict[str, Any]) -> list[str]:
        return object_row(self.model, item, namespace_column=self.namespace_column, wide=self.output == "wide")

    def print_items(self, items: list[dict[str, Any]], resource_version: str | None, single: bool) -> None:
        """Print the result of a get: one object or a list."""
        if self.output == "name":
            for item in items:
                typer.echo(object_ref(self.model, item["metadata"]["name"]))
        elif self.output in ("yaml", "json"):
            if single and len(items) == 1:
                data: Any = items[0]
            else:
                data = {
                    "api_version": "v1",
                    "kind": "List",
                    "metadata": {"resource_version": resource_version},
                    "items": items,
                }
            typer.echo(to_yaml(data).rstrip("\n") if self.output == "yaml" else json.dumps(data, indent=2))
        else:
            typer.echo(self.table.render([self.row(item) for item in items]))
        self.printed += len(items)

    def print_event(self, item: dict[str, Any]) -> None:
        """Print one object from a watch event."""
        if self.output == "name":
            typer.echo(object_ref(self.model, item["metadata"]["name"]))
        elif self.output == "yaml":
            typer.echo("---\n" + to_yaml(item).rstrip("\n"))
        elif self.output == "json":
            typer.echo(json.dumps(item, indent=2))
        else:
            row = self.row(item)
            self.table.widen([row])
            # The header goes out once, before the first row of a watch that started with nothing.
            typer.echo(self.table.render([row], header=self.printed == 0))
        self.printed += 1


def _watch(
    client: SkyShiftClient,
    printer: _Printer,
    listing: dict[str, Any],
    names: list[str],
    request: dict[str, Any],
    watch_timeout: float | None,
) -> None:
    """Print a row per change after the listing until interrupted or `watch_timeout` seconds pass."""
    deadline = time.monotonic() + watch_timeout if watch_timeout else None
    resource_version = listing["metadata"]["resource_version"]
    while True:
        remaining = None
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
        try:
            events = client.watch(
                resource_version=resource_version,
                timeout_seconds=max(1, round(remaining)) if remaining is not None else None,
                bookmarks=True,
                **request,
            )
            for event_type, obj in events:
                resource_version = obj.get("metadata", {}).get("resource_version") or resource_version
                if event_type == "BOOKMARK" or (names and obj["metadata"].get("name") not in names):
                    continue
                printer.print_event(obj)
        except GoneError:
            # The version was compacted: list again and go on from the new list, as kubectl does.
            listing = client.list_all(**request)
            resource_version = listing["metadata"]["resource_version"]
            for item in listing["items"]:
                if not names or item["metadata"]["name"] in names:
                    printer.print_event(item)
        except ServerUnreachableError:
            raise
        except UnavailableError as error:
            typer.echo(f"Warning: {error.message}; watching again", err=True)
            time.sleep(WATCH_RETRY_DELAY)


def get(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="Kind: plural, singular, short name or kind (jobs, job, jb, Job).")],
    names: Annotated[list[str] | None, typer.Argument(help="Names of objects; all objects when left out.")] = None,
    namespace: NamespaceOption = None,
    all_namespaces: Annotated[
        bool, typer.Option("--all-namespaces", "-A", help="List objects in every namespace.")
    ] = False,
    selector: Annotated[
        str | None, typer.Option("--selector", "-l", help="Label selector, such as app=web,tier!=db.")
    ] = None,
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Output format: wide, yaml, json or name. Default: a table.")
    ] = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="After listing, print a row for every change.")] = False,
    watch_timeout: Annotated[
        float | None,
        typer.Option("--watch-timeout", help="Stop watching after this many seconds. Default: until interrupted."),
    ] = None,
    server: ServerOption = None,
) -> None:
    """Show objects of one kind as a table, or as YAML, JSON or names."""
    if output is not None and output not in OUTPUT_FORMATS:
        raise InvalidError(f"invalid output format {output!r}: expected one of {', '.join(OUTPUT_FORMATS)}")
    model = resolve_model(kind)
    names = names or []
    if names and all_namespaces:
        raise InvalidError("a name cannot be combined with --all-namespaces; pass --namespace instead")
    across = all_namespaces and model.namespaced
    namespace = (namespace or DEFAULT_NAMESPACE) if model.namespaced else None
    printer = _Printer(model, output, namespace_column=across)

    with client_for(ctx, server) as client:
        request: dict[str, Any] = {
            "kind": model, "namespace": namespace, "all_namespaces": across, "label_selector": selector,
        }  # fmt: skip
        missing: list[str] = []
        if names and not watch:
            listing = None
            items = []
            for name in names:
                try:
                    items.append(client.get(model, name, namespace))
                except NotFoundError:
                    missing.append(name)
        else:
            # A watch needs the list's resource_version to start from, so named objects come from the list too.
            listing = client.list_all(**request)
            found = {item["metadata"]["name"]: item for item in listing["items"]}
            missing = [name for name in names if name not in found]
            items = [found[name] for name in names if name in found] if names else listing["items"]
        resource_version = listing["metadata"]["resource_version"] if listing else None

        for name in missing:
            typer.echo(f"Error: {not_found_message(model, name, namespace)}", err=True)
        if items:
            printer.print_items(items, resource_version, single=len(names) == 1)
        elif not names and not watch:
            where = "" if across or not model.namespaced else f" in {namespace} namespace"
            typer.echo(f"No resources found{where}.", err=True)

        if listing is not None and watch:
            try:
                _watch(client, printer, listing, names, request, watch_timeout)
            except KeyboardInterrupt:
                pass
    if missing:
        raise typer.Exit(1)


# ---- describe -------------------------------------------------------------------------------


def describe(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="Kind: plural, singular, short name or kind.")],
    name: Annotated[str, typer.Argument(help="Name of the object.")],
    namespace: NamespaceOption = None,
    server: ServerOption = None,
) -> None:
    """Show one object in detail: metadata, spec, status, conditions and recent events."""
    model = resolve_model(kind)
    namespace = (namespace or DEFAULT_NAMESPACE) if model.namespaced else None
    with client_for(ctx, server) as client:
        try:
            obj = client.get(model, name, namespace)
        except NotFoundError as error:
            raise NotFoundError(not_found_message(model, name, namespace)) from error
        events = related_events(client, model, obj) if kind_name(model) != "Event" else []
    typer.echo(describe_object(model, obj, events))


# ---- delete ---------------------------------------------------------------------------------


def delete(
    ctx: typer.Context,
    kind: Annotated[str | None, typer.Argument(help="Kind: plural, singular, short name or kind.")] = None,
    names: Annotated[list[str] | None, typer.Argument(help="Names of the objects to delete.")] = None,
    files: FilesOption = None,
    namespace: NamespaceOption = None,
    ignore_not_found: Annotated[
        bool, typer.Option("--ignore-not-found", help="Succeed quietly for objects that do not exist.")
    ] = False,
    server: ServerOption = None,
) -> None:
    """Delete objects by kind and names, or those named in manifests (-f)."""
    targets: list[tuple[type[Object], str, str | None]] = []
    if files:
        if kind or names:
            raise InvalidError("pass either KIND NAME... or -f FILE, not both")
        errors = []
        for document in read_manifests(files, sys.stdin):
            try:
                targets.append(manifest_target(document, namespace))
            except InvalidError as error:
                errors.append(error.message)
        if errors:
            _print_errors(errors)
            raise typer.Exit(1)
    else:
        if not kind or not names:
            raise InvalidError(
                "nothing to delete: pass KIND NAME... (for example: skyshift delete job my-job) or -f FILE"
            )
        model = resolve_model(kind)
        target_namespace = (namespace or DEFAULT_NAMESPACE) if model.namespaced else None
        targets = [(model, name, target_namespace) for name in names]

    failures = 0
    with client_for(ctx, server) as client:
        for model, name, target_namespace in targets:
            try:
                client.delete(model, name, target_namespace)
            except NotFoundError:
                if not ignore_not_found:
                    typer.echo(f"Error: {not_found_message(model, name, target_namespace)}", err=True)
                    failures += 1
                continue
            except ServerUnreachableError:
                raise
            except SkyShiftError as error:
                typer.echo(f"Error: {object_ref(model, name)}: {error.message}", err=True)
                failures += 1
                continue
            typer.echo(f'{model.singular}.skyshift "{name}" deleted')
    if failures:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("apply")(apply)
    app.add_typer(create_app, name="create")
    app.command("get")(get)
    app.command("describe")(describe)
    app.command("delete")(delete)
