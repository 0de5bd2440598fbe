"""Object commands in kubectl's manner: apply, create, get, describe and delete."""

import copy
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn

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
from skyshift_core.cli.targets import Target, parse_targets
from skyshift_core.client import SkyShiftClient
from skyshift_core.errors import (
    AlreadyExistsError,
    BadRequestError,
    ConflictError,
    ForbiddenError,
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
# Seconds a watch keeps trying to reach an API server that refuses connections, which covers a
# restart of the server. After that, `get -w` fails, as kubectl's does at once.
WATCH_UNREACHABLE_LIMIT = 60.0
_RESUMING = "; watch again from the last resource_version"

FilesOption = Annotated[
    list[str] | None,
    typer.Option(
        "--filename",
        "-f",
        help="Manifest file, directory of *.yaml/*.yml/*.json files, or - for stdin; several separated by commas.",
    ),
]


# Output formats of apply, create -f and delete: kubectl's `-o name` prints only each object's reference.
WRITE_OUTPUT_FORMATS = ("name",)

WriteOutputOption = Annotated[
    str | None,
    typer.Option(
        "--output", "-o", help="Output format: name prints only job.skyshift/NAME. Default: NAME and the outcome."
    ),
]


def _print_errors(messages: list[str]) -> None:
    for message in messages:
        typer.echo(f"Error: {message}", err=True)


def _check_write_output(output: str | None) -> None:
    if output is not None and output not in WRITE_OUTPUT_FORMATS:
        raise InvalidError(f"invalid output format {output!r}: expected {', '.join(WRITE_OUTPUT_FORMATS)}")


def _load(files: list[str], namespace: str | None, past_tense: str) -> list[ParsedManifest]:
    """Read and validate every document before anything is sent, so a bad file changes nothing.

    `past_tense` (applied, created) is the verb of the error that reports that nothing was sent.
    """
    documents = read_manifests(files, sys.stdin)
    parsed, errors = parse_manifests(documents, namespace)
    if errors:
        _fail_before_sending(errors, len(documents), past_tense)
    return parsed


def _fail_before_sending(errors: list[str], documents: int, past_tense: str, problem: str = "") -> NoReturn:
    """Print the errors of invalid documents and that none of the documents was sent; exit 1.

    `problem` describes what is wrong with them (default: is or are invalid)."""
    _print_errors(errors)
    invalid = f"{len(errors)} of {documents} documents" if documents > 1 else "the document"
    problem = problem or ("is invalid" if len(errors) == 1 else "are invalid")
    typer.echo(f"Error: nothing was {past_tense} because {invalid} {problem}; fix and run again", err=True)
    raise typer.Exit(1)


# ---- apply ----------------------------------------------------------------------------------


def _same_as_stored(manifest: ParsedManifest, current: dict[str, Any]) -> bool:
    """Tell whether replacing `current` with the manifest would change nothing the manifest sets:
    every field but metadata and status, the labels and annotations, and the finalizers if given."""
    try:
        stored = manifest.model.model_validate(current)
    except ValueError:
        return False  # The server's object has fields this client does not know: let the server decide.
    wanted = manifest.obj
    if wanted.metadata.labels != stored.metadata.labels or wanted.metadata.annotations != stored.metadata.annotations:
        return False
    if "finalizers" in wanted.metadata.model_fields_set and wanted.metadata.finalizers != stored.metadata.finalizers:
        return False
    excluded = {"metadata", "status"}
    return wanted.model_dump(mode="json", exclude=excluded) == stored.model_dump(mode="json", exclude=excluded)


def apply_manifest(client: SkyShiftClient, manifest: ParsedManifest, dry_run: bool = False) -> str:
    """Create the object or replace it, keeping its status; return created, configured or unchanged.

    A replace is a PUT of the manifest carrying the current resource_version, so a concurrent write
    fails it with a conflict and the read-and-replace is tried again. With `dry_run`, the server
    checks the create or replace and stores nothing.
    """
    model, name, namespace = manifest.model, manifest.name, manifest.namespace
    for _ in range(APPLY_ATTEMPTS):
        try:
            current = client.get(model, name, namespace)
        except NotFoundError:
            try:
                client.create(request_body(manifest), namespace, dry_run=dry_run)
                return "created"
            except AlreadyExistsError:
                # Another writer created it since our read: apply again as an update.
                continue

        if _same_as_stored(manifest, current):
            # As kubectl skips an empty patch: nothing is sent, so applying an unchanged manifest
            # needs no update permission.
            return "unchanged"
        body = copy.deepcopy(request_body(manifest))
        metadata = body["metadata"]
        metadata.pop("resourceVersion", None)
        metadata["resource_version"] = current["metadata"]["resource_version"]
        if "status" in current:
            body["status"] = current["status"]
        try:
            updated = client.update(body, namespace, dry_run=dry_run)
        except ConflictError:
            continue
        unchanged = updated["metadata"]["resource_version"] == current["metadata"]["resource_version"]
        # A dry run stores nothing, so its response keeps the resource_version either way.
        return "unchanged" if unchanged and not dry_run else "configured"
    raise ConflictError(
        f"{object_ref(model, name)} changed {APPLY_ATTEMPTS} times while it was being applied; "
        "another writer keeps modifying it, apply again later"
    )


DRY_RUN_MODES = ("none", "server")


def apply(
    ctx: typer.Context,
    files: FilesOption = None,
    namespace: NamespaceOption = None,
    output: WriteOutputOption = None,
    dry_run: Annotated[
        str,
        typer.Option(
            "--dry-run",
            help="server: have the API server check every object, as the apply would send it, and store nothing.",
        ),
    ] = "none",
    server: ServerOption = None,
) -> None:
    """Create or update the objects in manifests (several YAML documents per file, JSON too).

    The API server checks every document before any is applied, so a document that it would reject
    (a limit, a backend's config, a missing namespace, a missing permission) changes nothing."""
    _check_write_output(output)
    if dry_run not in DRY_RUN_MODES:
        raise typer.BadParameter(f"expected {' or '.join(DRY_RUN_MODES)}, got {dry_run!r}", param_hint="--dry-run")
    if not files:
        raise InvalidError("no manifest given: pass -f FILE, -f DIRECTORY or -f - for stdin")
    manifests = _load(files, namespace, "applied")
    if dry_run == "server":

        def check_one(client: SkyShiftClient, manifest: ParsedManifest) -> str:
            return f"{apply_manifest(client, manifest, dry_run=True)} (server dry run)"

        _each_manifest(ctx, server, manifests, check_one, "checked", output)
        return
    if len(manifests) > 1:
        with client_for(ctx, server) as client:
            # The apply itself prints the server's warnings, so the check does not print them twice.
            client.on_warning = lambda text: None
            errors = _server_check(client, manifests)
        if errors:
            _fail_before_sending(errors, len(manifests), "applied", "would be rejected")
    _each_manifest(ctx, server, manifests, apply_manifest, "applied", output)


def _server_check(client: SkyShiftClient, manifests: list[ParsedManifest]) -> list[str]:
    """Dry-run every manifest on the API server; return one error message per manifest it rejects.

    A namespace that an earlier document of the same apply creates does not exist yet during the
    check, so a document rejected only for that namespace counts as accepted."""
    errors = []
    created: set[str] = set()
    for manifest in manifests:
        try:
            apply_manifest(client, manifest, dry_run=True)
        except NotFoundError as error:
            missing = error.details.get("name") if error.details.get("kind") == "namespaces" else None
            if missing is None or missing not in created:
                errors.append(_document_error(manifest, error))
        except BadRequestError as error:
            if "dryRun" in error.message:
                # An API server older than this client has no dry run, so the documents are applied
                # one by one, as before.
                return []
            errors.append(_document_error(manifest, error))
        except ServerUnreachableError:
            raise
        except SkyShiftError as error:
            errors.append(_document_error(manifest, error))
        if manifest.model is Namespace:
            created.add(manifest.name)
    return errors


def _document_error(manifest: ParsedManifest, error: SkyShiftError) -> str:
    return f"{manifest.document.where} ({object_ref(manifest.model, manifest.name)}): {error.message}"


def _each_manifest(
    ctx: typer.Context,
    server: str | None,
    manifests: list[ParsedManifest],
    operate: Callable[[SkyShiftClient, ParsedManifest], str],
    past_tense: str,
    output: str | None,
) -> None:
    """Run `operate` on each manifest and print `<ref> <outcome>` or the error with its document.

    One manifest's error does not stop the others; the command exits 1 when any failed, after a
    line that counts the objects `past_tense` (applied, created) and those that failed."""
    done = failures = 0
    with client_for(ctx, server) as client:
        for manifest in manifests:
            ref = object_ref(manifest.model, manifest.name)
            try:
                outcome = operate(client, manifest)
            except ServerUnreachableError as error:
                if done:
                    raise ServerUnreachableError(
                        f"{error.message}; {done} of {len(manifests)} objects were {past_tense} before that"
                    ) from error
                raise
            except SkyShiftError as error:
                typer.echo(f"Error: {manifest.document.where} ({ref}): {error.message}", err=True)
                failures += 1
                continue
            done += 1
            typer.echo(ref if output == "name" else f"{ref} {outcome}")
    if failures and len(manifests) > 1:
        typer.echo(f"Error: {done} of {len(manifests)} objects {past_tense}; {failures} failed", err=True)
    if failures:
        raise typer.Exit(1)


# ---- create ---------------------------------------------------------------------------------

create_app = typer.Typer(invoke_without_command=True, no_args_is_help=False)


@create_app.callback()
def create(
    ctx: typer.Context,
    files: FilesOption = None,
    namespace: NamespaceOption = None,
    output: WriteOutputOption = None,
    server: ServerOption = None,
) -> None:
    """Create objects from manifests (-f), failing for objects that exist; or create a namespace."""
    _check_write_output(output)
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

    _each_manifest(ctx, server, _load(files, namespace, "created"), create_one, "created", output)


@create_app.command("namespace")
def create_namespace(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Name of the new namespace.")],
    output: WriteOutputOption = None,
    server: ServerOption = None,
) -> None:
    """Create a namespace."""
    _check_write_output(output)
    with client_for(ctx, server) as client:
        client.create({"kind": "Namespace", "metadata": {"name": name}})
    typer.echo(object_ref(Namespace, name) if output == "name" else f"{object_ref(Namespace, name)} created")


# ---- get ------------------------------------------------------------------------------------


class _Printer:
    """Prints objects for `get` in the chosen output format, once or event by event while watching."""

    def __init__(
        self,
        model: type[Object],
        output: str | None,
        namespace_column: bool,
        kind_in_name: bool = False,
        headers: bool = True,
    ):
        self.model = model
        self.output = output
        self.headers = headers
        self.namespace_column = namespace_column
        # With several kinds in one get, the NAME column shows `job.skyshift/NAME`, as kubectl does.
        self.kind_in_name = kind_in_name
        self.table = Table(object_headers(model, namespace_column=namespace_column, wide=output == "wide"))
        self.printed = 0
        # The row last printed for each object while watching, so that a change that shows in no
        # column (a status write of a field the table leaves out) prints no repeated row.
        self.last_rows: dict[tuple[str | None, str], list[str]] = {}

    def row(self, item: dict[str, Any]) -> list[str]:
        row = object_row(self.model, item, namespace_column=self.namespace_column, wide=self.output == "wide")
        if self.kind_in_name:
            name_column = 1 if self.namespace_column else 0
            row[name_column] = object_ref(self.model, row[name_column])
        return row

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
            rows = [self.row(item) for item in items]
            for item, row in zip(items, rows):
                self.last_rows[(item["metadata"].get("namespace"), item["metadata"]["name"])] = row
            typer.echo(self.table.render(rows, header=self.headers))
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
            key = (item["metadata"].get("namespace"), item["metadata"]["name"])
            if self.last_rows.get(key) == row:
                return
            self.last_rows[key] = row
            self.table.widen([row])
            # The header goes out once, before the first row of a watch that started with nothing.
            typer.echo(self.table.render([row], header=self.headers and self.printed == 0))
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
    # Time at which the API server was first found unreachable, or None once an event arrives.
    unreachable_since: float | None = None
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
                unreachable_since = None
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
        except ServerUnreachableError as error:
            now = time.monotonic()
            if unreachable_since is None:
                unreachable_since = now
                typer.echo(
                    f"Warning: {error.message}; trying again every {WATCH_RETRY_DELAY:g} s for up to "
                    f"{WATCH_UNREACHABLE_LIMIT:g} s",
                    err=True,
                )
            elif now - unreachable_since >= WATCH_UNREACHABLE_LIMIT:
                raise
            time.sleep(WATCH_RETRY_DELAY)
        except UnavailableError as error:
            reason = error.message.removesuffix(_RESUMING)
            typer.echo(f"Warning: {reason}; resuming the watch from resource_version {resource_version}", err=True)
            time.sleep(WATCH_RETRY_DELAY)


def get(
    ctx: typer.Context,
    kind: Annotated[
        str,
        typer.Argument(
            help="Kind: plural, singular, short name or kind (jobs, job, jb, Job); several separated by commas "
            "(jobs,clusters); or KIND/NAME (job/train).",
        ),
    ],
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Names of objects, or more KIND/NAME arguments; all objects when left out."),
    ] = None,
    namespace: NamespaceOption = None,
    all_namespaces: Annotated[
        bool, typer.Option("--all-namespaces", "-A", help="List objects in every namespace.")
    ] = False,
    selector: Annotated[
        str | None, typer.Option("--selector", "-l", help="Label selector, such as app=web,tier!=db.")
    ] = None,
    field_selector: Annotated[
        str | None,
        typer.Option(
            "--field-selector",
            help="Field selector on metadata.name, metadata.namespace or status.phase, such as status.phase=Running.",
        ),
    ] = None,
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Output format: wide, yaml, json or name. Default: a table.")
    ] = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="After listing, print a row for every change.")] = False,
    watch_timeout: Annotated[
        float | None,
        typer.Option("--watch-timeout", help="Stop watching after this many seconds. Default: until interrupted."),
    ] = None,
    no_headers: Annotated[
        bool, typer.Option("--no-headers", help="Print tables without their header line, as kubectl does.")
    ] = False,
    server: ServerOption = None,
) -> None:
    """Show objects of one or more kinds as tables (one per kind), or as YAML, JSON or names."""
    if output is not None and output not in OUTPUT_FORMATS:
        raise InvalidError(f"invalid output format {output!r}: expected one of {', '.join(OUTPUT_FORMATS)}")
    targets = parse_targets([kind, *(names or [])], "get")
    named = any(target.names for target in targets)
    if named and all_namespaces:
        raise InvalidError("a name cannot be combined with --all-namespaces; pass --namespace instead")
    if named and (selector or field_selector):
        raise InvalidError("a name cannot be combined with --selector or --field-selector; leave out one of them")
    selectors = Selectors(selector, field_selector)
    if watch and len(targets) > 1:
        kinds = ", ".join(target.model.plural for target in targets)
        raise InvalidError(f"--watch works with one kind at a time, got {kinds}; run one skyshift get -w per kind")

    with client_for(ctx, server) as client:
        if watch:
            missing = _get_and_watch(
                client, targets[0], namespace, all_namespaces, selectors, output, watch_timeout, not no_headers
            )
        else:
            missing = _get_once(client, targets, namespace, all_namespaces, selectors, output, not no_headers)
    if missing:
        raise typer.Exit(1)


@dataclass(frozen=True)
class Selectors:
    """The label and field selectors of a `get`, as given."""

    labels: str | None = None
    fields: str | None = None


def _get_named(
    client: SkyShiftClient, model: type[Object], names: list[str], namespace: str | None
) -> tuple[list[dict[str, Any]], int]:
    """Get each named object, printing an error for each one that is missing; return them and how many were."""
    found: list[dict[str, Any]] = []
    missing = 0
    for name in names:
        try:
            found.append(client.get(model, name, namespace))
        except NotFoundError:
            typer.echo(f"Error: {not_found_message(model, name, namespace)}", err=True)
            missing += 1
    return found, missing


def _target_namespace(model: type[Object], namespace: str | None) -> str | None:
    return (namespace or DEFAULT_NAMESPACE) if model.namespaced else None


def _get_once(
    client: SkyShiftClient,
    targets: list[Target],
    namespace: str | None,
    all_namespaces: bool,
    selectors: Selectors,
    output: str | None,
    headers: bool = True,
) -> int:
    """Print the objects of every target; return how many named objects were not found."""
    several = len(targets) > 1
    missing = 0
    printed: list[tuple[_Printer, list[dict[str, Any]], str | None]] = []
    for target in targets:
        model = target.model
        target_namespace = _target_namespace(model, namespace)
        across = all_namespaces and model.namespaced
        items: list[dict[str, Any]] = []
        resource_version = None
        try:
            if target.names:
                items, not_found = _get_named(client, model, target.names, target_namespace)
                missing += not_found
            else:
                listing = client.list_all(
                    model, target_namespace, all_namespaces=across,
                    label_selector=selectors.labels, field_selector=selectors.fields,
                )  # fmt: skip
                items = listing["items"]
                resource_version = listing["metadata"]["resource_version"]
        except ForbiddenError as error:
            if not several:
                raise
            # As kubectl does, the kinds the user may read are printed, and the denial of this one is named.
            typer.echo(f"Error: {error.message}", err=True)
            missing += 1
            continue
        printer = _Printer(model, output, namespace_column=across, kind_in_name=several, headers=headers)
        printed.append((printer, items, resource_version))

    found = [(printer, items, version) for printer, items, version in printed if items]
    if not found:
        if not any(target.names for target in targets):
            namespaced = any(target.model.namespaced for target in targets)
            where = f" in {namespace or DEFAULT_NAMESPACE} namespace" if namespaced and not all_namespaces else ""
            typer.echo(f"No resources found{where}.", err=True)
        return missing

    if several and output in ("yaml", "json"):
        # Objects of several kinds print as one List, as kubectl prints them.
        items = [item for _, kind_items, _ in found for item in kind_items]
        data = {"api_version": "v1", "kind": "List", "metadata": {"resource_version": ""}, "items": items}
        typer.echo(to_yaml(data).rstrip("\n") if output == "yaml" else json.dumps(data, indent=2))
        return missing
    single = len(targets) == 1 and len(targets[0].names) == 1
    for position, (printer, items, resource_version) in enumerate(found):
        if position and output != "name":
            # A blank line between the tables of different kinds.
            typer.echo("")
        printer.print_items(items, resource_version, single=single)
    return missing


def _get_and_watch(
    client: SkyShiftClient,
    target: Target,
    namespace: str | None,
    all_namespaces: bool,
    selectors: Selectors,
    output: str | None,
    watch_timeout: float | None,
    headers: bool = True,
) -> int:
    """List one kind, print it, then print every change; return how many named objects were not found."""
    model, names = target.model, target.names
    target_namespace = _target_namespace(model, namespace)
    across = all_namespaces and model.namespaced
    printer = _Printer(model, output, namespace_column=across, headers=headers)
    request: dict[str, Any] = {
        "kind": model, "namespace": target_namespace, "all_namespaces": across,
        "label_selector": selectors.labels, "field_selector": selectors.fields,
    }  # fmt: skip

    # A watch needs the list's resource_version to start from, so named objects come from the list too.
    listing = client.list_all(**request)
    found = {item["metadata"]["name"]: item for item in listing["items"]}
    missing = [name for name in names if name not in found]
    items = [found[name] for name in names if name in found] if names else listing["items"]
    for name in missing:
        typer.echo(f"Error: {not_found_message(model, name, target_namespace)}", err=True)
    if names and not items:
        return len(missing)  # As kubectl does, nothing named exists, so there is nothing to watch.
    if items and output in ("yaml", "json"):
        # As kubectl does, a watch prints every object on its own, the listed ones included.
        for item in items:
            printer.print_event(item)
    elif items:
        printer.print_items(items, listing["metadata"]["resource_version"], single=len(names) == 1)
    try:
        _watch(client, printer, listing, names, request, watch_timeout)
    except KeyboardInterrupt:
        pass
    return len(missing)


# ---- describe -------------------------------------------------------------------------------


def describe(
    ctx: typer.Context,
    kind: Annotated[
        str,
        typer.Argument(help="Kind: plural, singular, short name or kind; several separated by commas; or KIND/NAME."),
    ],
    names: Annotated[
        list[str] | None,
        typer.Argument(
            help="Names of the objects, or more KIND/NAME arguments; every object of the kind when left out."
        ),
    ] = None,
    namespace: NamespaceOption = None,
    server: ServerOption = None,
) -> None:
    """Show objects in detail: metadata, spec, status, conditions and recent events."""
    targets = parse_targets([kind, *(names or [])], "describe")
    missing = 0
    described: list[str] = []
    with client_for(ctx, server) as client:
        for target in targets:
            model = target.model
            target_namespace = _target_namespace(model, namespace)
            if target.names:
                objects, not_found = _get_named(client, model, target.names, target_namespace)
                missing += not_found
            else:
                objects = client.list_all(model, target_namespace)["items"]
            for obj in objects:
                events: list[dict] | str = []
                if kind_name(model) != "Event":
                    try:
                        events = related_events(client, model, obj)
                    except ForbiddenError as error:
                        # As kubectl does, the object is described all the same.
                        events = f"<not shown: {error}>"
                described.append(describe_object(model, obj, events))
    if described:
        # A blank line between objects, as kubectl describe separates them.
        typer.echo("\n\n".join(described))
    elif not missing:
        namespaced = any(target.model.namespaced for target in targets)
        where = f" in {namespace or DEFAULT_NAMESPACE} namespace" if namespaced else ""
        typer.echo(f"No resources found{where}.", err=True)
    if missing:
        raise typer.Exit(1)


# ---- delete ---------------------------------------------------------------------------------


def delete(
    ctx: typer.Context,
    kind: Annotated[
        str | None,
        typer.Argument(help="Kind: plural, singular, short name or kind; several separated by commas; or KIND/NAME."),
    ] = None,
    names: Annotated[
        list[str] | None, typer.Argument(help="Names of the objects to delete, or more KIND/NAME arguments.")
    ] = None,
    files: FilesOption = None,
    namespace: NamespaceOption = None,
    all_objects: Annotated[
        bool, typer.Option("--all", help="Delete every object of the kinds given in the namespace, as kubectl does.")
    ] = False,
    selector: Annotated[
        str | None,
        typer.Option("--selector", "-l", help="Delete the objects of the kinds given whose labels match (app=web)."),
    ] = None,
    ignore_not_found: Annotated[
        bool, typer.Option("--ignore-not-found", help="Succeed quietly for objects that do not exist.")
    ] = False,
    output: WriteOutputOption = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait/--no-wait",
            help="Wait until objects with finalizers (a Cluster whose work is being stopped) are gone, as kubectl does.",
        ),
    ] = True,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait with --wait; 0 waits until they are gone.", min=0)
    ] = 0,
    server: ServerOption = None,
) -> None:
    """Delete objects by kind and names (or KIND/NAME), those named in manifests (-f), or all objects
    of kinds (--all) or those matching a label selector (-l) in the namespace."""
    _check_write_output(output)
    targets: list[tuple[type[Object], str, str | None]] = []
    if all_objects or selector:
        if files or names or not kind or "/" in kind:
            raise InvalidError(
                f"{'--all' if all_objects else '--selector'} takes kinds only, without names or -f: "
                "for example skyshift delete jobs --all, or skyshift delete jobs -l app=web"
            )
        if all_objects and selector:
            raise InvalidError("pass --all or --selector, not both")
        where = ""
        with client_for(ctx, server) as client:
            for target in parse_targets([kind], "delete"):
                target_namespace = _target_namespace(target.model, namespace)
                if target_namespace is not None:
                    where = f" in {target_namespace} namespace"
                listed = client.list_all(target.model, target_namespace, label_selector=selector)["items"]
                targets += [(target.model, item["metadata"]["name"], target_namespace) for item in listed]
        if not targets:
            typer.echo(f"No resources found{where}.", err=True)
            return
    elif files:
        if kind or names:
            raise InvalidError("pass either KIND NAME... (or KIND/NAME...) or -f FILE, not both")
        documents = read_manifests(files, sys.stdin)
        errors = []
        for document in documents:
            try:
                targets.append(manifest_target(document, namespace))
            except InvalidError as error:
                errors.append(error.message)
        if errors:
            _fail_before_sending(errors, len(documents), "deleted")
    else:
        parsed = parse_targets([kind, *(names or [])], "delete") if kind else []
        if not parsed or not all(target.names for target in parsed):
            raise InvalidError(
                "nothing to delete: pass KIND NAME... or KIND/NAME... "
                "(for example: skyshift delete job my-job, or skyshift delete job/my-job) or -f FILE"
            )
        targets = [
            (target.model, name, _target_namespace(target.model, namespace))
            for target in parsed
            for name in target.names
        ]

    failures = 0
    with client_for(ctx, server) as client:
        pending: list[tuple[type[Object], str, str | None, dict]] = []
        for model, name, target_namespace in targets:
            try:
                deleted = client.delete(model, name, target_namespace)
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
            typer.echo(object_ref(model, name) if output == "name" else f'{model.singular}.skyshift "{name}" deleted')
            if (deleted.get("metadata") or {}).get("finalizers"):
                pending.append((model, name, target_namespace, deleted))
        if wait:
            failures += _wait_until_removed(client, pending, timeout)
    if failures:
        raise typer.Exit(1)


def _wait_until_removed(client, pending: list[tuple[type[Object], str, str | None, dict]], timeout: float) -> int:
    """Wait until each deleted object that has finalizers is gone; return how many timed out."""
    deadline = time.monotonic() + timeout if timeout else None
    timed_out = 0
    for model, name, namespace, deleted in pending:
        metadata = deleted["metadata"]
        typer.echo(
            f"Waiting for {object_ref(model, name)} to be removed: finalizers {', '.join(metadata['finalizers'])} "
            "are pending (Ctrl-C stops waiting, not the deletion; --no-wait returns at once)",
            err=True,
        )
        printed_conditions: set[tuple[str, str]] = set()
        while True:
            try:
                current = client.get(model, name, namespace)
            except NotFoundError:
                break
            if current["metadata"].get("uid") != metadata.get("uid"):
                break  # Removed, and another object of that name created since.
            # A controller that cannot finish reports the cause in a condition, such as CleanupFailed.
            for condition in (current.get("status") or {}).get("conditions") or []:
                if condition.get("status") == "False" and condition.get("message"):
                    shown_key = (str(condition.get("reason") or ""), str(condition["message"]))
                    if shown_key not in printed_conditions:
                        printed_conditions.add(shown_key)
                        typer.echo(f"  {condition.get('type')}=False {shown_key[0]}: {shown_key[1]}", err=True)
            if deadline is not None and time.monotonic() >= deadline:
                typer.echo(
                    f"Error: timed out after {timeout:g} s waiting for {object_ref(model, name)} to be removed; "
                    f"its finalizers are {', '.join(current['metadata'].get('finalizers') or [])}: see skyshift "
                    f"describe {model.singular} {name}",
                    err=True,
                )
                timed_out += 1
                break
            time.sleep(0.5)
    return timed_out


def register(app: typer.Typer) -> None:
    app.command("apply")(apply)
    app.add_typer(create_app, name="create")
    app.command("get")(get)
    app.command("describe")(describe)
    app.command("delete")(delete)
