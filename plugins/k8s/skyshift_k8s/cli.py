"""The plugin's CLI commands: `skyshift cluster import-kubeconfig` and `skyshift exec`.

`hooks.register_cli_commands` adds them to the `skyshift` application. Heavy imports (the
Kubernetes client, the manager) happen inside the commands, so `skyshift --help` stays fast.

`skyshift exec` runs where it is typed: it reads the Job and its Cluster from the API server,
then calls the cluster manager plugin in this process with the Cluster's `spec.config`. The
kubeconfig that config names must therefore exist on this machine, as it does when the control
plane runs locally (`skyshift up`).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer
from skyshift_core.cli.common import NamespaceOption, ServerOption, client_for, object_ref, to_yaml
from skyshift_core.cluster_manager import ClusterManagerError, ConfigError, WorkUnit
from skyshift_core.errors import AlreadyExistsError, InvalidError
from skyshift_core.objects import Cluster, Job

CLUSTER_MANAGERS = "skyshift.cluster_managers"


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


def _share_of(job: Job, replica: int | None) -> tuple[str, WorkUnit, int]:
    """Return the cluster, work unit and replica index to run in; the lowest placed replica by default."""
    placed = {
        cluster: share
        for cluster, share in job.status.clusters.items()
        if cluster in job.status.placement and share.replica_indices
    }
    if not placed:
        raise InvalidError(
            f"Job {job.metadata.name!r} has no replicas placed on a cluster yet; see: skyshift explain job {job.metadata.name}"
        )
    if replica is None:
        replica = min(index for share in placed.values() for index in share.replica_indices)
    for cluster, share in sorted(placed.items()):
        for part in share.work_units():
            if replica in part.replica_indices:
                unit = WorkUnit(job, cluster, tuple(part.replica_indices), job.spec.replicas, part.generation)
                return cluster, unit, replica
    raise InvalidError(
        f"replica {replica} of Job {job.metadata.name!r} is not placed on any cluster; "
        f"the Job has replicas 0 to {job.spec.replicas - 1}"
    )


def exec_command(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(help="Name of the Job.")],
    command: Annotated[list[str], typer.Argument(help="The command and its arguments, after '--'.", metavar="COMMAND")],
    replica: Annotated[
        int | None, typer.Option("--replica", "-r", help="Global index of the replica. Default: the lowest placed one.")
    ] = None,
    stdin: Annotated[bool, typer.Option("--stdin", "-i", help="Pass this terminal's input to the command.")] = False,
    tty: Annotated[bool, typer.Option("--tty", "-t", help="Allocate a TTY for the command (best effort).")] = False,
    namespace: NamespaceOption = None,
    server: ServerOption = None,
) -> None:
    """Run a command in one replica of a Job, through its cluster's manager on this machine.

    Exits with the command's exit code. The cluster's config (for Kubernetes, its kubeconfig)
    must be usable from this machine."""
    from skyshift_core.plugins import load_driver

    with client_for(ctx, server) as client:
        job_object = Job.model_validate(client.get(Job, job, namespace or "default"))
        cluster_name, unit, index = _share_of(job_object, replica)
        cluster = Cluster.model_validate(client.get(Cluster, cluster_name))

    manager_class = load_driver(CLUSTER_MANAGERS, cluster.spec.manager)
    if not getattr(manager_class, "supports_exec", False) or not hasattr(manager_class, "exec"):
        typer.echo(
            f"Error: cluster {cluster_name!r} uses manager {cluster.spec.manager!r}, which cannot run commands in replicas",
            err=True,
        )
        raise typer.Exit(1)
    interactive = stdin or tty
    if interactive and not hasattr(manager_class, "exec_interactive"):
        typer.echo(
            f"Error: manager {cluster.spec.manager!r} runs one-shot commands only; leave out -i and -t", err=True
        )
        raise typer.Exit(1)

    async def run() -> int:
        manager = manager_class(cluster_name, manager_class.validate_config(cluster.spec.config))
        await manager.start()
        try:
            if interactive:
                return await manager.exec_interactive(unit.key, index, command, tty=tty, stdin=stdin)
            result = await manager.exec(unit.key, index, command)
            sys.stdout.write(result.stdout)
            sys.stderr.write(result.stderr)
            return result.exit_code
        finally:
            await manager.stop()

    try:
        code = asyncio.run(run())
    except (ClusterManagerError, ConfigError) as error:
        typer.echo(f"Error: {error}", err=True)
        raise typer.Exit(1) from None
    sys.stdout.flush()
    raise typer.Exit(code)


def _group(app: typer.Typer, name: str) -> typer.Typer | None:
    for info in app.registered_groups:
        if info.name == name and info.typer_instance is not None:
            return info.typer_instance
    return None


def register(app: typer.Typer) -> None:
    """Add `cluster import-kubeconfig` (to an existing `cluster` group, or a new one) and `exec`."""
    cluster_app = _group(app, "cluster")
    if cluster_app is None:
        cluster_app = typer.Typer(no_args_is_help=True)
        app.add_typer(cluster_app, name="cluster", help="Attach clusters from other tools' configuration.")
    cluster_app.command("import-kubeconfig")(import_kubeconfig_command)
    app.command("exec")(exec_command)
