#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite against real etcd and Slurm.
# Extra arguments go to pytest, for example: bash scripts/test.sh -k watch
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${SKYSHIFT_VENV:-.venv}
exec "$VENV/bin/python" -m pytest -p no:cacheprovider "$@"
