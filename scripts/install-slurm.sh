#!/usr/bin/env bash
# Install Slurm 22.05 and munge from Debian and prepare this machine to run local
# single-node Slurm clusters (skyshift_slurm.localcluster), plus OpenSSH's sshd for the
# Slurm plugin's ssh tests. Run as root. Safe to run again: each step is skipped when it
# is already done.
#
# It starts no daemon. Debian installs them without starting them when there is no
# systemd, and LocalSlurmCluster starts munged, slurmctld and slurmd itself.
set -euo pipefail
# The daemons live in /usr/sbin, which a non-login root shell may lack.
export PATH="$PATH:/usr/sbin:/sbin"

PACKAGES=(slurm-wlm slurmctld slurmd slurm-client munge slurmrestd)
MUNGE_KEY=/etc/munge/munge.key
RESTD_USER=slurmrest

fail() {
    echo "install-slurm: $*" >&2
    exit 1
}

if [[ "$(id -u)" -ne 0 ]]; then
    fail "must run as root (current uid $(id -u)); run it with sudo or as root"
fi

# 1. Packages. apt-get update runs only when a package is missing, because it is the
#    slow step and needs the network.
missing=()
for package in "${PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)"
    if [[ "$status" != "install ok installed" ]]; then
        missing+=("$package")
    fi
done
if ((${#missing[@]} > 0)); then
    echo "install-slurm: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update || fail "apt-get update failed; check the network and the apt sources"
    apt-get install -y "${PACKAGES[@]}" \
        || fail "apt-get install failed for: ${PACKAGES[*]}"
else
    echo "install-slurm: packages already installed: ${PACKAGES[*]}"
fi
for program in slurmctld slurmd slurmrestd munged munge sbatch scontrol; do
    command -v "$program" >/dev/null \
        || fail "program $program not found on PATH after installing ${PACKAGES[*]}"
done

# 2. slurm.conf names the controller host by the short host name, which must
#    resolve to 127.0.0.1 so that the daemons stay on loopback. The files
#    backend returns the first matching line of /etc/hosts, so when the name already
#    maps to another address (a container's IP, Debian's 127.0.1.1) the new line goes
#    first. The file is rewritten in place because Docker bind-mounts it.
short_name="$(hostname -s)"
[[ -n "$short_name" ]] || fail "hostname -s returned an empty name; set a host name first"
resolve() { getent ahostsv4 "$short_name" 2>/dev/null | awk 'NR == 1 { print $1 }' || true; }
resolved="$(resolve)"
if [[ "$resolved" == "127.0.0.1" ]]; then
    echo "install-slurm: $short_name already resolves to 127.0.0.1"
elif [[ -z "$resolved" ]]; then
    echo "install-slurm: appending '127.0.0.1 $short_name' to /etc/hosts"
    echo "127.0.0.1 $short_name" >>/etc/hosts || fail "cannot append to /etc/hosts"
else
    echo "install-slurm: $short_name resolves to $resolved; adding '127.0.0.1 $short_name' as the first line of /etc/hosts"
    hosts_copy="$(mktemp)"
    { echo "127.0.0.1 $short_name"; cat /etc/hosts; } >"$hosts_copy" \
        && cat "$hosts_copy" >/etc/hosts \
        || { rm -f "$hosts_copy"; fail "cannot rewrite /etc/hosts"; }
    rm -f "$hosts_copy"
fi
resolved="$(resolve)"
[[ "$resolved" == "127.0.0.1" ]] \
    || fail "$short_name resolves to '${resolved:-nothing}' after editing /etc/hosts, expected 127.0.0.1; check the hosts line of /etc/nsswitch.conf"

# 3. The munge key. The Debian package creates it on install, but an image may have
#    dropped it.
if [[ ! -s "$MUNGE_KEY" ]]; then
    echo "install-slurm: creating $MUNGE_KEY"
    if command -v mungekey >/dev/null; then
        mungekey --create --keyfile="$MUNGE_KEY" --force \
            || fail "mungekey could not create $MUNGE_KEY"
    else
        dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none \
            || fail "cannot write $MUNGE_KEY"
    fi
else
    echo "install-slurm: $MUNGE_KEY already exists"
fi
chown munge:munge "$MUNGE_KEY" || fail "cannot chown $MUNGE_KEY to munge:munge"
chmod 0400 "$MUNGE_KEY" || fail "cannot chmod 0400 $MUNGE_KEY"
# munged exits when group or others can write to a directory it uses (key, socket, seed, log).
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge \
    || fail "cannot create the munge directories"
install -d -o munge -g munge -m 0755 /run/munge || fail "cannot create /run/munge"

# 4. slurmrestd exits when started as root, so it runs as this system user.
if id -u "$RESTD_USER" >/dev/null 2>&1; then
    echo "install-slurm: user $RESTD_USER already exists"
else
    echo "install-slurm: creating system user $RESTD_USER"
    useradd --system --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin "$RESTD_USER" \
        || fail "useradd could not create the system user $RESTD_USER"
fi

# 5. The Slurm plugin's tests reach the local clusters over ssh too. They start their own sshd
#    on a loopback port, so only the program is needed. Debian starts the system's sshd when it
#    installs openssh-server, unless invoke-rc.d's hook policy-rc.d forbids it. A temporary
#    policy-rc.d therefore keeps this script from opening port 22.
if command -v sshd >/dev/null; then
    echo "install-slurm: sshd already installed"
else
    echo "install-slurm: installing openssh-server (sshd for the ssh access mode's tests; not started)"
    added_policy=no
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\n# Written by install-slurm.sh while it installs openssh-server.\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        added_policy=yes
    fi
    export DEBIAN_FRONTEND=noninteractive
    install_status=0
    apt-get install -y --no-install-recommends openssh-server \
        || { apt-get update && apt-get install -y --no-install-recommends openssh-server; } \
        || install_status=$?
    if [[ "$added_policy" == yes ]]; then
        rm -f /usr/sbin/policy-rc.d
    fi
    [[ "$install_status" -eq 0 ]] || fail "apt-get install failed for openssh-server"
    command -v sshd >/dev/null || fail "sshd not found on PATH after installing openssh-server"
fi
# sshd refuses to start without its privilege separation directory, which systemd would create.
install -d -m 0755 /run/sshd || fail "cannot create /run/sshd"

echo "install-slurm: done ($(slurmctld -V))"
