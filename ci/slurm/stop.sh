#!/usr/bin/env bash
# Stop the cluster started by ci/slurm/setup.sh: cancel leftover jobs, then stop slurmd,
# slurmctld and munged through their pid files (TERM, then KILL after a grace period).
# Idempotent: daemons that are not running are skipped. Run as root.
set -uo pipefail

readonly RUN_DIR=/run/robustmap-slurm
readonly GRACE_S="${ROBUSTMAP_SLURM_GRACE_S:-15}"

log() { printf '[slurm-stop] %s\n' "$*"; }

cancel_leftover_jobs() {
    local jobs
    jobs=$(squeue --noheader --format=%i 2>/dev/null | tr '\n' ' ')
    if [[ -n "${jobs// /}" ]]; then
        log "cancelling leftover jobs: $jobs"
        # shellcheck disable=SC2086  # one argument per job id
        scancel $jobs || true
    fi
}

stop_by_pid_file() {
    local name=$1 pid_file=$2 pid
    if [[ ! -s "$pid_file" ]] || ! kill -0 "$(cat "$pid_file")" 2>/dev/null; then
        log "$name not running"
        rm -f "$pid_file"
        return
    fi
    pid=$(cat "$pid_file")
    log "stopping $name (pid $pid)"
    kill -TERM "$pid"
    for ((waited = 0; waited < GRACE_S * 10; waited++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name ignored TERM for ${GRACE_S}s; killing"
        kill -KILL "$pid"
    fi
    rm -f "$pid_file"
}

[[ $(id -u) -eq 0 ]] || { log "run as root"; exit 1; }
cancel_leftover_jobs
stop_by_pid_file slurmd "$RUN_DIR/slurmd.pid"
stop_by_pid_file slurmctld "$RUN_DIR/slurmctld.pid"
stop_by_pid_file munged /run/munge/munged.pid
