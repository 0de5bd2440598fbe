#!/usr/bin/env bash
# Stop what scripts/demo.sh started: the two local Slurm clusters and the control plane.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${SKYSHIFT_VENV:-.venv}
STATE_DIR=${SKYSHIFT_STATE_DIR:-$HOME/.skyshift}
SLURM_DIR=${SKYSHIFT_SLURM_DIR:-/var/tmp/skyshift-demo}
for cluster in site-a site-b; do
    if [ -d "$SLURM_DIR/$cluster" ]; then
        "$VENV/bin/skyshift-slurm-local" down --dir "$SLURM_DIR/$cluster"
    fi
done
"$VENV/bin/skyshift" down --state-dir "$STATE_DIR"
