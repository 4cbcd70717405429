#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine, for tests/test_slurm.py (and for trying
# profiles/slurm by hand). Debian 12, run as root; needs no systemd. Idempotent: a second run
# leaves running daemons alone (unless slurm.conf had to change) and only waits for them.
#
#   scripts/slurm-local.sh          install (apt), configure, start munged/slurmctld/slurmd, wait
#   scripts/slurm-local.sh stop     stop slurmctld, slurmd and munged
#   scripts/slurm-local.sh status   sinfo and squeue, or a non-zero exit if SLURM is not up
#
# The node is this host with all its cores and ~80% of its memory, in one partition `debug`.
# Without slurmdbd there is no accounting: job states come from squeue, and MinJobAge=600
# keeps finished jobs listed there for 10 minutes so snakemake sees how they ended.
set -euo pipefail

CONF=/etc/slurm/slurm.conf   # not $SLURM_CONF: the jobstep's srun reads only the default path
LOG_DIR=/var/log/slurm
STATE_DIR=/var/lib/slurm/slurmctld
SPOOL_DIR=/var/lib/slurm/slurmd
RUN_DIR=/run/slurm
HOST=$(hostname)
WAIT_S=${SLURM_LOCAL_WAIT_S:-120}

log() { echo "slurm-local: $*" >&2; }
die() { log "error: $*"; exit 1; }

running() {  # running NAME PIDFILE: the daemon in PIDFILE is alive and is NAME
    local pid
    [[ -s $2 ]] || return 1
    pid=$(<"$2")
    [[ -r /proc/$pid/comm ]] && [[ $(</proc/"$pid"/comm) == "$1"* ]]
}

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
        return
    fi
    log "installing slurm-wlm and munge"
    # another apt run (an image build) may hold the lock for a while: wait for it; a fresh
    # machine may have no package lists yet: fetch them and try again
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=600)
    if ! "${apt[@]}" install slurm-wlm munge >/dev/null; then
        "${apt[@]}" update >/dev/null
        "${apt[@]}" install slurm-wlm munge >/dev/null
    fi
}

start_munge() {
    mkdir -p /run/munge /var/lib/munge /var/log/munge /etc/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge /etc/munge
    chmod 0755 /run/munge
    chmod 0700 /etc/munge /var/log/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        log "creating /etc/munge/munge.key"
        runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    if ! running munged /run/munge/munged.pid; then
        log "starting munged"
        # --force: start even if a stale socket is left from a killed munged
        runuser -u munge -- munged --force
    fi
    local i
    for ((i = 0; i < 20; i++)); do
        munge -n </dev/null | unmunge >/dev/null 2>&1 && return
        sleep 0.5
    done
    die "munge does not answer (see /var/log/munge/munged.log)"
}

write_conf() {  # prints "changed" when slurm.conf was (re)written
    local mem_mb new
    # the node offers ~80% of its memory to jobs: the rest is for the OS and the daemons
    mem_mb=$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 * 0.8 }' /proc/meminfo)
    new=$(mktemp)
    cat >"$new" <<EOF
# Written by scripts/slurm-local.sh: a one-node cluster on $HOST for selfalign's SLURM test.
ClusterName=selfalign
SlurmctldHost=$HOST
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
MpiDefault=none
# no cgroups in a container without systemd: plain process tracking, no task binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# cores and memory are consumable, so several small jobs share the node
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# no slurmdbd: squeue is the only job status source, and it must keep finished jobs a while
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=600
# a node that went down because its slurmd was restarted comes back by itself
ReturnToService=2
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$STATE_DIR
SlurmdSpoolDir=$SPOOL_DIR
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
NodeName=$HOST CPUs=$(nproc) RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    if [[ -f $CONF ]] && cmp -s "$new" "$CONF"; then
        rm -f "$new"
        return
    fi
    mkdir -p "$(dirname "$CONF")"
    mv "$new" "$CONF"
    chmod 0644 "$CONF"
    echo changed
}

stop_slurm() {
    local name pid i
    for name in slurmctld slurmd; do
        if running "$name" "$RUN_DIR/$name.pid"; then
            pid=$(<"$RUN_DIR/$name.pid")
            log "stopping $name ($pid)"
            kill "$pid"
            for ((i = 0; i < 40; i++)); do
                running "$name" "$RUN_DIR/$name.pid" || break
                sleep 0.25
            done
            if running "$name" "$RUN_DIR/$name.pid"; then kill -9 "$pid"; fi
        fi
    done
}

stop_munge() {
    local pid
    if running munged /run/munge/munged.pid; then
        pid=$(</run/munge/munged.pid)
        log "stopping munged ($pid)"
        kill "$pid"
    fi
}

node_state() {
    sinfo -h -n "$HOST" -o %T 2>/dev/null | head -n1
}

start_slurm() {
    mkdir -p "$LOG_DIR" "$STATE_DIR" "$SPOOL_DIR" "$RUN_DIR"
    if [[ $(write_conf) == changed ]]; then
        log "wrote $CONF"
        stop_slurm
    fi
    if ! running slurmctld "$RUN_DIR/slurmctld.pid"; then
        log "starting slurmctld"
        slurmctld   # daemonizes; -R would recover jobs from the state dir, which is the default
    fi
    if ! running slurmd "$RUN_DIR/slurmd.pid"; then
        log "starting slurmd"
        slurmd
    fi
    local i state=""
    for ((i = 0; i < WAIT_S; i++)); do
        state=$(node_state)
        case $state in
            idle | mixed | allocated | completing) break ;;
            down* | drain*)
                # left down by an earlier, unclean stop: the node is fine, put it back
                scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true ;;
        esac
        sleep 1
    done
    case $state in
        idle | mixed | allocated | completing) ;;
        *) die "node $HOST is '${state:-not listed}' after ${WAIT_S}s (see $LOG_DIR/slurmctld.log and slurmd.log)" ;;
    esac
    # a real job through slurmctld, slurmd, munge and srun: the path snakemake's jobs take
    timeout "$WAIT_S" srun --job-name=slurm-local-check -N1 -n1 -t 1 true ||
        die "srun true failed (see $LOG_DIR/slurmctld.log and slurmd.log)"
    log "SLURM is up: node $HOST is $state"
}

case ${1:-start} in
    start)
        [[ $(id -u) == 0 ]] || die "run as root"
        install_packages
        start_munge
        start_slurm
        ;;
    stop)
        [[ $(id -u) == 0 ]] || die "run as root"
        stop_slurm
        stop_munge
        ;;
    status)
        running slurmctld "$RUN_DIR/slurmctld.pid" || die "slurmctld is not running"
        running slurmd "$RUN_DIR/slurmd.pid" || die "slurmd is not running"
        sinfo
        squeue
        ;;
    *)
        echo "usage: $0 [start|stop|status]" >&2
        exit 2
        ;;
esac
