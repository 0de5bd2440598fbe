"""SkyShift hook implementations of the Kubernetes plugin (entry point `kubernetes` in `skyshift.hooks`).

They add the plugin's CLI command; see `skyshift_k8s.cli`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from skyshift_core.hookspecs import hookimpl

if TYPE_CHECKING:
    import typer


@hookimpl
def register_cli_commands(app: typer.Typer) -> None:
    """Add `skyshift cluster import-kubeconfig`."""
    from skyshift_k8s import cli

    cli.register(app)
