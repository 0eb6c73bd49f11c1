#!/usr/bin/env bash
# System packages the test suite uses (Debian 12): a real SLURM cluster and
# chromium. Installed with apt when missing; the SLURM daemons themselves are
# started by the tests (tests/slurm/cluster.sh start, idempotent).
set -euo pipefail
pkgs=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server chromium)
missing=()
for p in "${pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "system-deps: missing Debian packages: ${missing[*]}" >&2
    echo "system-deps: run 'sudo tests/system-deps.sh' (or install them) first" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
