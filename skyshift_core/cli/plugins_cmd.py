"""`skyshift plugins`: list the plugins installed where the CLI runs (no API server needed).

The root CLI mounts `app` as `skyshift plugins`; `python -m skyshift_core.cli.plugins_cmd` runs it alone.
"""

from __future__ import annotations

import json

import typer

from skyshift_core.plugins import PluginInfo, list_plugins, plugins_payload

app = typer.Typer(no_args_is_help=True)

COLUMNS = ("NAME", "GROUP", "DISTRIBUTION", "VERSION", "PROVIDES", "STATUS")


@app.callback()
def plugins() -> None:
    """Inspect the plugins installed in this Python environment."""
    # This callback keeps `list` a subcommand when this app runs alone: without it, typer would run
    # an app's only command directly.


@app.command("list")
def list_command(
    as_json: bool = typer.Option(
        False, "--json", help="Print the PluginList JSON that GET /api/v1/plugins returns, warnings included."
    ),
) -> None:
    """List every plugin found: name, group, distribution, version, what it provides, and whether it loaded."""
    payload = plugins_payload()
    if as_json:
        typer.echo(json.dumps(payload, indent=2))
    else:
        infos = list_plugins()
        if infos:
            typer.echo(format_table(infos))
        else:
            typer.echo("No plugins found.", err=True)
    for warning in payload["warnings"]:
        typer.echo(f"Warning: {warning}", err=True)


def status_text(info: PluginInfo) -> str:
    return "loaded" if info.status == "loaded" else f"failed: {info.error}"


def format_table(infos: list[PluginInfo]) -> str:
    """Render plugins as a kubectl-style table: upper-case headers, columns padded to their widest cell."""
    rows = [COLUMNS] + [
        (info.name, info.group, info.distribution, info.version, info.provides, status_text(info)) for info in infos
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(COLUMNS))]
    lines = []
    for row in rows:
        # The last column is not padded, so lines carry no trailing spaces.
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths[:-1])] + [row[-1]]
        lines.append("   ".join(cells))
    return "\n".join(lines)


if __name__ == "__main__":
    app()
