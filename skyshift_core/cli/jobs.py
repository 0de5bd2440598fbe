"""`skyshift logs` and `skyshift explain`: a Job's output and the reasoning behind its placement."""

from __future__ import annotations

from typing import Annotated

import typer

from skyshift_core.cli.common import NamespaceOption, ServerOption, client_for, to_yaml


def logs(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(help="Name of the Job.")],
    namespace: NamespaceOption = None,
    replica: Annotated[int | None, typer.Option("--replica", "-r", help="Show only this replica (global index).")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new output until interrupted.")] = False,
    tail: Annotated[int | None, typer.Option("--tail", help="Print only the last N lines of each replica.")] = None,
    server: ServerOption = None,
) -> None:
    """Print the output of a Job's replicas; without --replica each line starts with its replica."""
    with client_for(ctx, server) as client:
        for entry in client.job_logs(job, namespace, replica=replica, follow=follow, tail=tail):
            if "error" in entry:
                typer.echo(f"Error reading logs from cluster {entry['cluster']}: {entry['error']}", err=True)
                continue
            prefix = "" if replica is not None else f"[replica {entry['replica']} on {entry['cluster']}] "
            typer.echo(prefix + entry["line"])


def explain(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="Only 'job' can be explained.")],
    name: Annotated[str, typer.Argument(help="Name of the Job.")],
    namespace: NamespaceOption = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help="yaml or json for the raw record.")] = None,
    server: ServerOption = None,
) -> None:
    """Show the Job's last scheduling cycle: each cluster's verdict with reasons, scores and the division."""
    if kind.lower() not in ("job", "jobs", "jb"):
        raise typer.BadParameter(f"cannot explain {kind!r}: only jobs are scheduled; use: skyshift explain job NAME")
    with client_for(ctx, server) as client:
        record = client.explain_job(name, namespace)
    if output == "json":
        import json

        typer.echo(json.dumps(record, indent=2))
        return
    if output == "yaml":
        typer.echo(to_yaml(record))
        return
    if output is not None:
        raise typer.BadParameter(f"invalid output {output!r}: expected yaml or json")
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
        header = ["CLUSTER", "FITS", *[plugin.upper() for plugin in plugins], "TOTAL", "PLACED"]
        rows = [header]
        for entry in feasible:
            scores = [str(entry["scores"].get(plugin, "")) for plugin in plugins]
            placed = str(cycle.get("placement", {}).get(entry["cluster"], 0))
            rows.append([entry["cluster"], str(entry["fit_count"]), *scores, str(entry["total"]), placed])
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
