"""The plugin's CLI command `skyshift cluster import-kubeconfig`.

`hooks.register_cli_commands` adds it to the `skyshift` application. Heavy imports (the
Kubernetes client) happen inside the command, so `skyshift --help` stays fast. `skyshift exec`
is a core command, which calls `KubernetesClusterManager.exec`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from skyshift_core.cli.common import ServerOption, client_for, object_ref, to_yaml
from skyshift_core.cluster_manager import ConfigError
from skyshift_core.errors import AlreadyExistsError
from skyshift_core.objects import Cluster


def import_kubeconfig_command(
    ctx: typer.Context,
    kubeconfig: Annotated[
        Path | None,
        typer.Option(
            "--kubeconfig", help="Kubeconfig file to read. Default: the first file in $KUBECONFIG, else ~/.kube/config."
        ),
    ] = None,
    context: Annotated[
        str | None, typer.Option("--context", help="Import only this context. Default: every context in the file.")
    ] = None,
    apply: Annotated[
        bool,
        typer.Option(
            "--apply/--dry-run", help="Create the Clusters through the API server, or only print them as YAML."
        ),
    ] = True,
    server: ServerOption = None,
) -> None:
    """Create a Cluster (manager kubernetes) for each context of a kubeconfig file.

    Context names that are not valid object names (with '/', ':', '@', '_' or upper case) get a
    derived name. The Cluster's config keeps the original context and the file's absolute path."""
    from skyshift_k8s.kubeconfig_import import default_kubeconfig_path, import_kubeconfig

    path = kubeconfig if kubeconfig is not None else default_kubeconfig_path()
    try:
        manifests = import_kubeconfig(path, context)
    except ConfigError as error:
        typer.echo(f"Error: {error}", err=True)
        raise typer.Exit(1) from None

    if not apply:
        typer.echo("---\n".join(to_yaml(manifest) for manifest in manifests), nl=False)
        return
    with client_for(ctx, server) as client:
        for manifest in manifests:
            name, source = manifest["metadata"]["name"], manifest["spec"]["config"]["context"]
            try:
                client.create(manifest)
            except AlreadyExistsError:
                typer.echo(f"{object_ref(Cluster, name)} already exists (context {source!r}); skipped")
                continue
            typer.echo(f"{object_ref(Cluster, name)} created (context {source!r})")


def _group(app: typer.Typer, name: str) -> typer.Typer | None:
    for info in app.registered_groups:
        if info.name == name and info.typer_instance is not None:
            return info.typer_instance
    return None


def register(app: typer.Typer) -> None:
    """Add `cluster import-kubeconfig` to an existing `cluster` group, or to a new one."""
    cluster_app = _group(app, "cluster")
    if cluster_app is None:
        cluster_app = typer.Typer(no_args_is_help=True)
        app.add_typer(cluster_app, name="cluster", help="Attach clusters from other tools' configuration.")
    cluster_app.command("import-kubeconfig")(import_kubeconfig_command)
