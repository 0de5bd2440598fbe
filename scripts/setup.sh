#!/usr/bin/env bash
# Install everything SkyShift needs on a Debian machine (run as root): etcd and Slurm from Debian's
# packages, then a virtual environment in .venv with the core and every plugin installed from
# their wheels. Safe to run again: each step skips what is already in place. The installation into
# the virtual environment is skipped too when the sources have not changed since the last one.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${SKYSHIFT_VENV:-.venv}
PYTHON=${PYTHON:-python3}

need_apt=()
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server etcd-client)
if ((${#need_apt[@]})); then
    echo "==> Installing ${need_apt[*]} from Debian's packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

echo "==> Installing Slurm from Debian's packages (scripts/install-slurm.sh)"
bash scripts/install-slurm.sh

if [ ! -x "$VENV/bin/python" ]; then
    echo "==> Creating the virtual environment $VENV"
    "$PYTHON" -m venv "$VENV"
fi

# A fingerprint of everything the wheels are built from. When the virtual environment was last set
# up from the same sources and the same Python, the installation below is skipped.
sources_fingerprint() {
    {
        "$VENV/bin/python" --version
        find scripts/setup.sh pyproject.toml README.md skyshift_core plugins -type f \
            -not -path '*/__pycache__/*' -not -path '*/tests/*' -not -path '*/build/*' \
            -not -path '*/dist/*' -not -path '*.egg-info/*' -print0 | sort -z | xargs -0 sha256sum
    } | sha256sum | cut -d' ' -f1
}
fingerprint_file="$VENV/.skyshift-sources"
fingerprint=$(sources_fingerprint)
if [ -f "$fingerprint_file" ] && [ "$(cat "$fingerprint_file")" = "$fingerprint" ]; then
    echo "==> $VENV already has SkyShift installed from these sources"
    echo "==> Setup done: $VENV/bin/skyshift"
    exit 0
fi
rm -f "$fingerprint_file"
"$VENV/bin/python" -m pip install -q --upgrade pip

# Every distribution is installed from a freshly built wheel (not in editable mode), so the tests
# exercise what users get from `pip install`. The first pass brings dependencies; the second
# rebuilds SkyShift's own distributions even when their version number did not change.
distributions=(.)
with_test_extras=(".[test]")
for plugin in plugins/*/; do
    if [ -f "$plugin/pyproject.toml" ]; then
        distributions+=("./${plugin%/}")
        # Plugins that need more for their tests (the Kubernetes fake) declare a `test` extra.
        if grep -q '^test = ' "$plugin/pyproject.toml"; then
            with_test_extras+=("./${plugin%/}[test]")
        else
            with_test_extras+=("./${plugin%/}")
        fi
    fi
done
echo "==> Installing ${distributions[*]} into $VENV"
"$VENV/bin/python" -m pip install -q "${with_test_extras[@]}"
"$VENV/bin/python" -m pip install -q --force-reinstall --no-deps "${distributions[@]}"
echo "$fingerprint" > "$fingerprint_file"
echo "==> Setup done: $VENV/bin/skyshift"
