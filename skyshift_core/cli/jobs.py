"""`skyshift logs` and `skyshift explain`: a Job's output and the reasoning behind its placement."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from skyshift_core.cli.common import NamespaceOption, ServerOption, client_for, kind_name, not_found_message, to_yaml
from skyshift_core.client import SkyShiftClient, resolve_model
from skyshift_core.errors import NotFoundError
from skyshift_core.objects import Job
from skyshift_core.objects.meta import DEFAULT_NAMESPACE

EXPLAIN_OUTPUT_FORMATS = ("yaml", "json")

Result = TypeVar("Result")


def job_name(argument: str, name: str | None, command: str) -> str:
    """Return the Job name from `JOB`, `KIND JOB` or `KIND/JOB`, where KIND must name the Job kind.

    A KIND other than Job is a usage mistake (click's BadParameter, exit 2): only Jobs have
    logs and a scheduling explanation.
    """
    if "/" in argument:
        if name is not None:
            raise typer.BadParameter(
                f"{argument!r} already names the Job, so {name!r} is one argument too many: "
                f"write 'skyshift {command} {argument}'"
            )
        kind, _, name = argument.partition("/")
    elif name is None:
        return argument
    else:
        kind = argument
    if not kind or not name:
        raise typer.BadParameter(f"invalid argument {argument!r}: expected JOB or job/JOB")
    model = resolve_model(kind)
    if model is not Job:
        raise typer.BadParameter(
            f"skyshift {command} works only with Jobs, not with {kind_name(model)} objects; "
            f"use: skyshift {command} job/NAME"
        )
    return name


def _job_must_exist(client: SkyShiftClient, name: str, namespace: str, request: Callable[[], Result]) -> Result:
    """Run `request`; when it fails with NotFound because the Job itself is missing, say so in the CLI's words.

    Another missing object (such as the Cluster a replica was placed on) keeps the server's message.
    """
    try:
        return request()
    except NotFoundError as error:
        try:
            client.get(Job, name, namespace)
        except NotFoundError:
            raise NotFoundError(not_found_message(Job, name, namespace)) from error
        raise


def logs(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(help="Name of the Job, or job/NAME.")],
    namespace: NamespaceOption = None,
    replica: Annotated[int | None, typer.Option("--replica", "-r", help="Show only this replica (global index).")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new output until interrupted.")] = False,
    tail: Annotated[int | None, typer.Option("--tail", help="Print only the last N lines of each replica.")] = None,
    server: ServerOption = None,
) -> None:
    """Print the output of a Job's replicas; without --replica each line starts with its replica.

    Exits 1 when the logs of any cluster could not be read, after printing those of the others."""
    name = job_name(job, None, "logs")
    namespace = namespace or DEFAULT_NAMESPACE
    failed_clusters: list[str] = []
    with client_for(ctx, server) as client:

        def print_lines() -> None:
            for entry in client.job_logs(name, namespace, replica=replica, follow=follow, tail=tail):
                if "error" in entry:
                    typer.echo(f"Error reading logs from cluster {entry['cluster']}: {entry['error']}", err=True)
                    failed_clusters.append(entry["cluster"])
                    continue
                prefix = "" if replica is not None else f"[replica {entry['replica']} on {entry['cluster']}] "
                typer.echo(prefix + entry["line"])

        _job_must_exist(client, name, namespace, print_lines)
    if failed_clusters:
        raise typer.Exit(1)


def explain(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="'job' (only Jobs are scheduled), or job/NAME.")],
    name: Annotated[str | None, typer.Argument(help="Name of the Job, unless given as job/NAME.")] = None,
    namespace: NamespaceOption = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help="yaml or json for the raw record.")] = None,
    server: ServerOption = None,
) -> None:
    """Show the Job's last scheduling cycle: each cluster's verdict with reasons, scores and the division."""
    if output is not None and output not in EXPLAIN_OUTPUT_FORMATS:
        raise typer.BadParameter(
            f"invalid output format {output!r}: expected one of {', '.join(EXPLAIN_OUTPUT_FORMATS)}",
            param_hint="'--output' / '-o'",
        )
    if "." in kind and name is None:
        # kubectl explain documents fields; this command explains a scheduling decision.
        raise typer.BadParameter(
            f"{kind!r} is not a Job: skyshift explain shows why a Job was placed where it was "
            "('skyshift explain job NAME'); the manifest fields are described in docs/manifests.md"
        )
    if "/" not in kind and name is None:
        raise typer.BadParameter("no Job name given: write 'skyshift explain job NAME' or 'skyshift explain job/NAME'")
    name = job_name(kind, name, "explain")
    namespace = namespace or DEFAULT_NAMESPACE
    with client_for(ctx, server) as client:
        record: dict[str, Any] = _job_must_exist(client, name, namespace, lambda: client.explain_job(name, namespace))
    if output == "json":
        typer.echo(json.dumps(record, indent=2))
    elif output == "yaml":
        typer.echo(to_yaml(record))
    else:
        typer.echo(render_explanation(record))


def render_explanation(record: dict) -> str:
    job = record["job"]
    noun = "replica" if job["replicas"] == 1 else "replicas"
    lines = [f"Job:        {job['namespace']}/{job['name']} ({job['replicas']} {noun}, profile {job['scheduler_name']})"]
    lines.append(f"Phase:      {record['phase']}")
    placement = record.get("placement") or {}
    lines.append("Placement:  " + (", ".join(f"{name}={count}" for name, count in sorted(placement.items())) or "<none>"))
    scheduled = record.get("scheduled")
    if scheduled:
        lines.append(f"Scheduled:  {scheduled['status']} ({scheduled['reason']}): {scheduled['message']}")
    cycle = record.get("last_cycle")
    if not cycle:
        lines.append("No scheduling cycle has run for this Job yet.")
        return "\n".join(lines)
    lines.append("")
    lines.append(f"Last cycle: {cycle['message']}")
    feasible = cycle.get("feasible", [])
    if feasible:
        plugins = sorted({plugin for entry in feasible for plugin in entry["scores"]})
        # Without any score the total means nothing, so the column is left out.
        totals = ["SCORE"] if plugins else []
        header = ["CLUSTER", "FITS", *[plugin.upper() for plugin in plugins], *totals, "PLACED"]
        rows = [header]
        for entry in feasible:
            scores = [str(entry["scores"].get(plugin, "")) for plugin in plugins]
            total = [str(entry["total"])] if plugins else []
            placed = str(cycle.get("placement", {}).get(entry["cluster"], 0))
            rows.append([entry["cluster"], str(entry["fit_count"]), *scores, *total, placed])
        widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
        lines.append("Feasible clusters:")
        lines.extend("  " + "   ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)
        if cycle.get("feasible_omitted"):
            lines.append(f"  ... and {cycle['feasible_omitted']} more feasible clusters with lower scores")
        if cycle.get("skipped_scores"):
            lines.append(f"  Not scored (nothing to compare for this Job): {', '.join(cycle['skipped_scores'])}")
    filtered = cycle.get("filtered", [])
    if filtered:
        lines.append("Filtered out:")
        for group in filtered:
            lines.append(f"  {group['reason']}: {', '.join(group['clusters'])}")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    app.command("logs")(logs)
    app.command("explain")(explain)
