#!/usr/bin/env bash
# The main job: set up, start a local control plane (etcd, API server, controller manager) and two
# local single-node Slurm clusters, attach them, run the example Jobs across both, and show their
# states and output. Leaves everything running and prints how to stop it (scripts/demo-down.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

VENV=${SKYSHIFT_VENV:-.venv}
SKYSHIFT="$VENV/bin/skyshift"
STATE_DIR=${SKYSHIFT_STATE_DIR:-$HOME/.skyshift}
# The API server's port. Empty: the port that the last run recorded in STATE_DIR, else 50051.
PORT=${SKYSHIFT_PORT:-}
# Slurm's daemons and slurmrestd need every parent of a cluster's directory to be searchable by
# other users, which a home directory usually is not.
SLURM_DIR=${SKYSHIFT_SLURM_DIR:-/var/tmp/skyshift-demo}
CLUSTERS=(site-a site-b)
export SKYSHIFT_CONFIG="$STATE_DIR/config.yaml"

up_options=(--state-dir "$STATE_DIR")
if [ -n "$PORT" ]; then
    up_options+=(--port "$PORT")
fi
"$SKYSHIFT" up "${up_options[@]}"

mkdir -p "$SLURM_DIR"
chmod 0755 "$SLURM_DIR"
for cluster in "${CLUSTERS[@]}"; do
    if "$VENV/bin/skyshift-slurm-local" status --dir "$SLURM_DIR/$cluster" >/dev/null 2>&1; then
        echo "==> Slurm cluster $cluster is already running"
    else
        echo "==> Starting the local Slurm cluster $cluster (2 CPUs)"
        "$VENV/bin/skyshift-slurm-local" up --name "$cluster" --dir "$SLURM_DIR/$cluster" --cpus 2 >/dev/null
    fi
    "$SKYSHIFT" apply -f - <<MANIFEST
kind: Cluster
metadata:
  name: $cluster
  labels:
    site: $cluster
spec:
  manager: slurm
  config:
    interface: cli
    slurm_conf: $SLURM_DIR/$cluster/slurm.conf
    output_dir: $SLURM_DIR/$cluster/output
MANIFEST
done

wait_until() {
    # wait_until SECONDS DESCRIPTION COMMAND...: run COMMAND about every second until it succeeds
    # or SECONDS have passed (bash's SECONDS counts the time, whatever each try takes).
    local limit=$1 description=$2
    shift 2
    local deadline=$((SECONDS + limit))
    while ((SECONDS < deadline)); do
        if "$@"; then
            return 0
        fi
        sleep 1
    done
    echo "Timed out after ${limit} s waiting for $description" >&2
    return 1
}

clusters_ready() {
    local ready
    ready=$("$SKYSHIFT" get clusters -o json | "$VENV/bin/python" -c \
        'import json, sys; print(sum(item["status"]["phase"] == "READY" for item in json.load(sys.stdin)["items"]))')
    [ "$ready" -ge "${#CLUSTERS[@]}" ]
}
echo "==> Waiting for both clusters to be READY"
wait_until 60 "the Slurm clusters to be READY" clusters_ready
"$SKYSHIFT" get clusters

echo "==> Applying the example Jobs in examples/"
"$SKYSHIFT" apply -f examples/hello-job.yaml
"$SKYSHIFT" apply -f examples/primes-job.yaml

EXAMPLE_JOBS=(hello primes)
jobs_finished() {
    # Only the example Jobs count: other Jobs of the namespace may run for as long as they like.
    local table
    table=$("$SKYSHIFT" get jobs "${EXAMPLE_JOBS[@]}")
    echo "$table" | tail -n +2 | sed 's/^/    /'
    ! echo "$table" | tail -n +2 | grep -qE ' (Pending|Running) '
}
echo "==> Waiting for the Jobs to finish"
wait_until 180 "the example Jobs to finish" jobs_finished

echo
echo "==> skyshift get jobs ${EXAMPLE_JOBS[*]}"
"$SKYSHIFT" get jobs "${EXAMPLE_JOBS[@]}"
echo
echo "==> skyshift logs hello"
"$SKYSHIFT" logs hello
echo
echo "==> skyshift logs primes --tail 3"
"$SKYSHIFT" logs primes --tail 3
echo
if "$SKYSHIFT" get jobs "${EXAMPLE_JOBS[@]}" | tail -n +2 | grep -q ' Failed '; then
    echo "A Job failed; see: $SKYSHIFT describe job NAME" >&2
    exit 1
fi
if [ "$STATE_DIR" != "$HOME/.skyshift" ]; then
    echo "To use the CLI with this control plane: export SKYSHIFT_CONFIG=$SKYSHIFT_CONFIG"
fi
if [ "$STATE_DIR" != "$HOME/.skyshift" ] || [ "$SLURM_DIR" != /var/tmp/skyshift-demo ] || [ "$VENV" != .venv ]; then
    echo "Everything is still running. Stop it with the same SKYSHIFT_* variables set: bash scripts/demo-down.sh"
else
    echo "Everything is still running. Stop it with: bash scripts/demo-down.sh"
fi
