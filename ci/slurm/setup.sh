#!/usr/bin/env bash
# Start a single-node SLURM cluster on 127.0.0.1 from Debian packages, by hand (no systemd).
#
# Run as root. Idempotent: installs only what is missing, rewrites the config, and starts only
# the daemons that are not already running. The node has no GPUs; jobs that ask Snakemake for
# `gpu=1` run here because profiles/slurm-test maps that request to no GRES (see profiles/).
#
#   sudo ci/slurm/setup.sh        # then: sinfo ; ci/slurm/stop.sh to shut down
#
# Environment: ROBUSTMAP_SLURM_PARTITION (default "robustmap"), ROBUSTMAP_SLURM_ROOT
# (default /var/lib/robustmap-slurm), ROBUSTMAP_SLURM_WAIT_S (default 60).
set -euo pipefail

readonly PARTITION="${ROBUSTMAP_SLURM_PARTITION:-robustmap}"
readonly ROOT="${ROBUSTMAP_SLURM_ROOT:-/var/lib/robustmap-slurm}"
readonly WAIT_S="${ROBUSTMAP_SLURM_WAIT_S:-60}"
readonly RUN_DIR=/run/robustmap-slurm
readonly LOG_DIR=/var/log/robustmap-slurm
readonly CONF_DIR=/etc/slurm
readonly PACKAGES=(munge slurmctld slurmd slurm-client)
STARTED_AT=$(date +%s.%N)
readonly STARTED_AT

log() { printf '[slurm-setup] %s\n' "$*"; }
die() { printf '[slurm-setup] error: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root"

# A daemon is running when its pid file names a live process.
is_running() { [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
    local missing=()
    for pkg in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
    if ((${#missing[@]} == 0)); then
        log "packages present: ${PACKAGES[*]}"
        return
    fi
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Package lists may be absent (fresh CI image) or stale: refresh once, only on failure.
    if ! apt-get install -y --no-install-recommends "${missing[@]}"; then
        apt-get update
        apt-get install -y --no-install-recommends "${missing[@]}"
    fi
}

start_munge() {
    install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
    install -d -o munge -g munge -m 0755 /run/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        log "creating munge key"
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    if is_running /run/munge/munged.pid; then
        log "munged already running (pid $(cat /run/munge/munged.pid))"
    else
        log "starting munged"
        runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
    fi
    munge -n | unmunge >/dev/null || die "munge round trip failed"
}

# RealMemory must not exceed what slurmd finds, or the node is drained; keep a margin.
real_memory_mb() {
    awk '/^MemAvailable:/ { printf "%d\n", $2 / 1024 * 0.8 }' /proc/meminfo
}

write_config() {
    local node cpus memory
    node=$(hostname -s)
    cpus=$(nproc)
    memory=$(real_memory_mb)
    install -d -m 0755 "$CONF_DIR" "$RUN_DIR" "$LOG_DIR" "$ROOT/ctld" "$ROOT/d"
    cat >"$CONF_DIR/slurm.conf" <<CONF
# Written by robustmap ci/slurm/setup.sh: one node, no accounting database, no GPUs.
ClusterName=robustmap
SlurmctldHost=${node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=${ROOT}/ctld
SlurmdSpoolDir=${ROOT}/d
SlurmctldPidFile=${RUN_DIR}/slurmctld.pid
SlurmdPidFile=${RUN_DIR}/slurmd.pid
SlurmctldLogFile=${LOG_DIR}/slurmctld.log
SlurmdLogFile=${LOG_DIR}/slurmd.log
# No cgroups in containers: track processes through /proc and bind no tasks.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# No slurmdbd: job states come from slurmctld, which keeps finished jobs for MinJobAge
# seconds; squeue-based status polling (profiles/slurm*) relies on that window.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=600
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
# Trust the configured CPUs/RealMemory instead of draining on small mismatches.
SlurmdParameters=config_overrides
NodeName=${node} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${memory} State=UNKNOWN
PartitionName=${PARTITION} Nodes=${node} Default=YES MaxTime=INFINITE State=UP
CONF
    log "wrote $CONF_DIR/slurm.conf (node ${node}, ${cpus} CPUs, ${memory} MB)"
}

start_daemon() {
    local name=$1 pid_file=$2
    if is_running "$pid_file"; then
        log "$name already running (pid $(cat "$pid_file")); reloading config"
        scontrol reconfigure >/dev/null 2>&1 || true
        return
    fi
    rm -f "$pid_file"
    log "starting $name"
    "/usr/sbin/$name"
}

wait_for_idle_node() {
    local deadline=$((SECONDS + WAIT_S)) state
    while ((SECONDS < deadline)); do
        state=$(sinfo --noheader --Node --format=%t 2>/dev/null | head -n 1 || true)
        case "$state" in
            idle | mix | alloc) return 0 ;;
            down* | drain* | drng*) scontrol update NodeName="$(hostname -s)" State=RESUME \
                >/dev/null 2>&1 || true ;;
        esac
        sleep 1
    done
    tail -n 30 "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" >&2 || true
    die "node not idle after ${WAIT_S}s (state: '${state:-no answer}')"
}

main() {
    install_packages
    start_munge
    write_config
    start_daemon slurmctld "$RUN_DIR/slurmctld.pid"
    start_daemon slurmd "$RUN_DIR/slurmd.pid"
    wait_for_idle_node
    log "cluster up in $(awk -v s="$STARTED_AT" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }') s"
    sinfo --Node --long
    scontrol show config | grep -E '^(SLURM_VERSION|ClusterName|MinJobAge|ProctrackType|TaskPlugin|SelectType |AccountingStorageType)'
    log "pid files: $RUN_DIR/slurmctld.pid $RUN_DIR/slurmd.pid /run/munge/munged.pid; logs: $LOG_DIR"
}

main "$@"
