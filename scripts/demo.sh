#!/usr/bin/env bash
# The main job: set up, start a local control plane (etcd, API server, controller manager), apply
# the example Job and show what SkyShift reports for it. Leaves the control plane running.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${SKYSHIFT_VENV:-.venv}
SKYSHIFT="$VENV/bin/skyshift"
STATE_DIR=${SKYSHIFT_STATE_DIR:-$HOME/.skyshift}

"$SKYSHIFT" up --state-dir "$STATE_DIR"
export SKYSHIFT_CONFIG="$STATE_DIR/config.yaml"

echo "==> Applying examples/hello-job.yaml"
"$SKYSHIFT" apply -f examples/hello-job.yaml

echo "==> skyshift get jobs"
"$SKYSHIFT" get jobs
echo "==> skyshift describe job hello"
"$SKYSHIFT" describe job hello

echo
echo "The control plane is still running. Stop it with: $SKYSHIFT down --state-dir $STATE_DIR"
