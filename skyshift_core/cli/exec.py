"""`skyshift exec`: run a command in one replica of a Job, as `kubectl exec` does in a pod.

The command runs where it is typed: the CLI reads the Job and its Cluster from the API server,
then calls the cluster manager plugin in this process with the Cluster's `spec.config`. So the
plugin must be installed here and that config must work here: for Kubernetes the kubeconfig it
names, for Slurm the Slurm commands and slurm.conf (interface cli) or the ssh login (interface ssh).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer

from skyshift_core.cli.common import NamespaceOption, ServerOption, client_for
from skyshift_core.cli.jobs import job_name
from skyshift_core.cluster_manager import ClusterManager, ClusterManagerError, ConfigError, WorkUnit
from skyshift_core.errors import InvalidError, PluginError
from skyshift_core.objects import Cluster, Job
from skyshift_core.objects.meta import DEFAULT_NAMESPACE

CLUSTER_MANAGERS = "skyshift.cluster_managers"


def share_of(job: Job, replica: int | None) -> tuple[str, WorkUnit, int]:
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
    elif not 0 <= replica < job.spec.replicas:
        raise InvalidError(
            f"invalid replica {replica}: Job {job.metadata.name!r} has replicas 0 to {job.spec.replicas - 1}; "
            "pass one of them to --replica"
        )
    for cluster, share in sorted(placed.items()):
        for part in share.work_units():
            if replica in part.replica_indices:
                unit = WorkUnit(job, cluster, tuple(part.replica_indices), job.spec.replicas, part.generation)
                return cluster, unit, replica
    raise InvalidError(
        f"replica {replica} of Job {job.metadata.name!r} is not placed on any cluster; "
        f"the Job has replicas 0 to {job.spec.replicas - 1}"
    )


def check_replica_runs(job: Job, cluster: str, replica: int) -> None:
    """Raise InvalidError when the Job's status shows that the replica runs no command now: it waits
    to restart or has ended. Other states are left to the manager, because the status may lag a
    replica that has just started."""
    task = job.status.clusters[cluster].tasks.get(str(replica))
    if task is None:
        return
    subject = f"replica {replica} of Job {job.metadata.name!r} on cluster {cluster!r}"
    detail = f": {task.message}" if task.message else ""
    if task.state == "Running" and task.reason == "BackOff":
        raise InvalidError(
            f"{subject} is waiting to restart (BackOff{detail}); run the command once it runs again, "
            f"which skyshift get job {job.metadata.name} -w shows"
        )
    if task.state in ("Succeeded", "Failed"):
        raise InvalidError(f"{subject} has ended ({task.state}{detail}); commands run only in running replicas")


def _manager_class(cluster: Cluster) -> type[ClusterManager]:
    from skyshift_core.plugins import load_driver

    try:
        return load_driver(CLUSTER_MANAGERS, cluster.spec.manager)
    except PluginError as error:
        raise PluginError(
            f"{error}. skyshift exec runs the cluster's manager on this machine: install the plugin that "
            f"provides {cluster.spec.manager!r} here"
        ) from error


def exec_command(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(help="Name of the Job, or job/NAME.")],
    command: Annotated[list[str], typer.Argument(help="The command and its arguments, after '--'.", metavar="COMMAND")],
    replica: Annotated[
        int | None,
        typer.Option("--replica", "-r", help="Global index of the replica. Default: the lowest placed one."),
    ] = None,
    stdin: Annotated[bool, typer.Option("--stdin", "-i", help="Pass this terminal's input to the command.")] = False,
    tty: Annotated[bool, typer.Option("--tty", "-t", help="Allocate a TTY for the command (best effort).")] = False,
    namespace: NamespaceOption = None,
    server: ServerOption = None,
) -> None:
    """Run a command in one replica of a Job, through its cluster's manager here.

    Exits with the command's exit code. The manager's plugin must be installed
    here, with its config usable from this machine: for Kubernetes the
    kubeconfig, for Slurm the Slurm commands (cli) or the ssh login (ssh)."""
    name = job_name(job, None, "exec")
    with client_for(ctx, server) as client:
        job_object = Job.model_validate(client.get(Job, name, namespace or DEFAULT_NAMESPACE))
        cluster_name, unit, index = share_of(job_object, replica)
        check_replica_runs(job_object, cluster_name, index)
        cluster = Cluster.model_validate(client.get(Cluster, cluster_name))

    manager_class = _manager_class(cluster)
    if not manager_class.supports_exec:
        typer.echo(
            f"Error: cluster {cluster_name!r} uses manager {cluster.spec.manager!r}, which cannot run commands in replicas",
            err=True,
        )
        raise typer.Exit(1)
    interactive = stdin or tty
    if interactive and manager_class.exec_interactive is ClusterManager.exec_interactive:
        typer.echo(f"Error: manager {cluster.spec.manager!r} runs one-shot commands only; leave out -i and -t", err=True)
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


def register(app: typer.Typer) -> None:
    app.command("exec")(exec_command)
