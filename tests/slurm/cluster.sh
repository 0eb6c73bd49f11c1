#!/usr/bin/env bash
# A real single-node SLURM cluster for the tests: slurmctld + slurmd + slurmdbd
# (accounting in MariaDB, so the profile's default `sacct` status query works
# as on a production cluster), two partitions (`cpu`, the default, and `gpu`)
# and two fake GPUs backed by dummy character devices.
#
#   (packages: tests/system-deps.sh; Debian 12 ships SLURM 22.05)
#   tests/slurm/cluster.sh start     write the config, start every daemon (idempotent)
#   tests/slurm/cluster.sh stop      stop the daemons
#   tests/slurm/cluster.sh status    exit 0 when the node is up and idle
#
# Must run as root (it writes /etc/slurm and starts system daemons).
set -Eeuo pipefail  # -E: the ERR trap below also fires inside functions

CLUSTER=bids2hub
NODE=$(hostname -s)
# Overridable so a test can start from a state without any SLURM config.
CONF_DIR=${BIDS2HUB_SLURM_CONF_DIR:-/etc/slurm}
LOG_DIR=${BIDS2HUB_SLURM_LOG_DIR:-/var/log/slurm}
SPOOL=${BIDS2HUB_SLURM_SPOOL:-/var/spool}
# The daemons and clients find a config outside /etc/slurm through SLURM_CONF.
[ "$CONF_DIR" = /etc/slurm ] || export SLURM_CONF="$CONF_DIR/slurm.conf"
DB_PASS=bids2hub-test
# The node advertises more cores and memory than the machine has
# (config_overrides): SLURM only books them here, nothing is enforced, so the
# test jobs run side by side with the profile's production-size requests
# (a DeepISLES job asks for 4 CPUs and 16 GB).
NODE_CPUS=${BIDS2HUB_SLURM_CPUS:-8}
NODE_MEM_MB=${BIDS2HUB_SLURM_MEM_MB:-40000}

log() { printf 'slurm-cluster: %s\n' "$*" >&2; }

# Every bring-up step names itself, so a failure says which step and why.
STEP="start-up"
step() { STEP=$1; log "step: $STEP"; }
trap 'rc=$?; log "failed in step \"$STEP\" (exit $rc at line $LINENO: $BASH_COMMAND)"; exit $rc' ERR

# md5 of the config files that exist (none on a machine that never ran this).
config_digest() {
    local f
    for f in "$CONF_DIR"/slurm.conf "$CONF_DIR"/gres.conf "$CONF_DIR"/cgroup.conf; do
        if [ -f "$f" ]; then cat "$f"; fi
    done | md5sum
}

# Process tracking: proctrack/cgroup puts every process of a job in its own
# freezer cgroup, so scancel kills them all, also those whose parent died
# (proctrack/linuxproc follows parent links and loses them: a job-side
# Snakemake survived a scancel for 14-25 minutes that way). It needs a
# writable cgroup v1 freezer hierarchy (or a cgroup v2 mount); without one
# (some containers) the cluster falls back to linuxproc and says so.
CGROUP_ROOT=${BIDS2HUB_SLURM_CGROUP_ROOT:-/sys/fs/cgroup}
proctrack() {
    local probe
    if [ "$(stat -fc %T "$CGROUP_ROOT" 2>/dev/null)" = cgroup2fs ]; then
        probe="$CGROUP_ROOT/bids2hub-probe-$$"
    else
        probe="$CGROUP_ROOT/freezer/bids2hub-probe-$$"
    fi
    if mkdir "$probe" 2>/dev/null; then
        rmdir "$probe"
        echo cgroup
    else
        echo linuxproc
    fi
}

write_config() {
    mkdir -p "$CONF_DIR" "$LOG_DIR" "$SPOOL/slurmctld" "$SPOOL/slurmd" /run/munge
    local track
    track=$(proctrack)
    [ "$track" = cgroup ] || log "no writable cgroup hierarchy under $CGROUP_ROOT: proctrack/linuxproc"
    # Two fake GPUs: slurmd only keeps GRES that point at existing devices.
    for i in 0 1; do
        [ -e "/dev/fakegpu$i" ] || mknod "/dev/fakegpu$i" c 1 3
    done
    cat >"$CONF_DIR/slurm.conf" <<EOF
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$SPOOL/slurmctld
SlurmdSpoolDir=$SPOOL/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
ProctrackType=proctrack/$track
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
SchedulerType=sched/builtin
ReturnToService=2
MailProg=/bin/true
MinJobAge=300
DefMemPerCPU=500
KillWait=5
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/none
NodeName=$NODE NodeAddr=127.0.0.1 Boards=1 SocketsPerBoard=1 CoresPerSocket=$NODE_CPUS ThreadsPerCore=1 RealMemory=$NODE_MEM_MB Gres=gpu:fake:2 State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE MaxTime=INFINITE State=UP
EOF
    # Only process tracking: no core, memory or device constraints (TaskPlugin=task/none).
    cat >"$CONF_DIR/cgroup.conf" <<EOF
CgroupMountpoint=$CGROUP_ROOT
ConstrainCores=no
ConstrainRAMSpace=no
ConstrainDevices=no
EOF
    cat >"$CONF_DIR/gres.conf" <<EOF
AutoDetect=off
NodeName=$NODE Name=gpu Type=fake File=/dev/fakegpu[0-1]
EOF
    cat >"$CONF_DIR/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
LogFile=$LOG_DIR/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$CONF_DIR/slurmdbd.conf"
}

running() { pgrep -x "$1" >/dev/null 2>&1; }

# Daemons start without the caller's open files: run as `flock LOCK cluster.sh
# start`, a daemon would otherwise inherit the lock's descriptor and hold the
# lock for as long as it runs, blocking every later test run. (In a subshell:
# closes every descriptor above 2.)
close_fds() {
    local fd
    for fd in /proc/self/fd/*; do
        fd=${fd##*/}
        if [ "$fd" -gt 2 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
}
daemon() { (close_fds; exec "$@"); }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local deadline=$((SECONDS + $1)) what=$2
    shift 2
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS > deadline)); then
            log "timed out waiting for $what"
            return 1
        fi
        sleep 0.5
    done
}

start_munge() {
    if [ ! -s /etc/munge/munge.key ]; then
        mkdir -p /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
    chmod 400 /etc/munge/munge.key
    running munged || daemon runuser -u munge -- /usr/sbin/munged
    wait_for 10 munge bash -c 'munge -n | unmunge'
}

start_mariadb() {
    if ! running mariadbd && ! running mysqld; then
        mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
        (close_fds; mysqld_safe >/dev/null 2>&1 &)
    fi
    wait_for 30 mariadb mysqladmin ping
    mysql -u root <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
FLUSH PRIVILEGES;
EOF
}

start_slurm() {
    running slurmdbd || daemon slurmdbd
    wait_for 30 slurmdbd sacctmgr -n list cluster
    sacctmgr -i -Q add cluster "$CLUSTER" >/dev/null 2>&1 || true
    if ! running slurmctld; then
        # A cold start: forget jobs and node states of an earlier cluster.
        rm -rf "${SPOOL:?}/slurmctld/"*
        daemon slurmctld -c
    fi
    running slurmd || daemon slurmd
    wait_for 60 "the node to be idle" node_idle
}

stop_slurm() {
    for d in slurmd slurmctld slurmdbd; do pkill -x "$d" || true; done
    wait_for 30 "the daemons to stop" bash -c '! pgrep -x "slurmd|slurmctld|slurmdbd"'
}

node_idle() {
    sinfo -h -N -n "$NODE" -o '%t' | grep -Eq '^(idle|mix|alloc)'
}

cmd=${1:-start}
case "$cmd" in
start)
    [ "$(id -u)" = 0 ] || { log "must run as root"; exit 1; }
    step "write the configuration to $CONF_DIR"
    before=$(config_digest)
    write_config
    after=$(config_digest)
    if [ "$before" != "$after" ] && running slurmctld; then
        step "restart the SLURM daemons (configuration changed)"
        stop_slurm
    fi
    step "start munge"
    start_munge
    step "start mariadb"
    start_mariadb
    step "start slurmdbd, slurmctld, slurmd"
    start_slurm
    log "up: $(sinfo -h -o '%P %a %D %t %G' | tr '\n' ';')"
    ;;
stop) stop_slurm ;;
status) node_idle ;;
*)
    log "unknown command '$cmd' (start, stop, status)"
    exit 2
    ;;
esac
