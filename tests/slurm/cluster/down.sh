#!/usr/bin/env bash
# Stop the test cluster of up.sh: cancel its jobs, then stop slurmd, slurmctld, slurmdbd, mariadbd and
# munged by the pids in their pid files under $EUROFLOW_SLURM_ROOT (default /tmp/euroflow-slurm), and
# wait for each to exit. Idempotent. State and logs stay (up.sh reuses them; delete the root to start afresh).
set -euo pipefail

# shellcheck source=common.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

take_lock

# jobs still queued or running would leave slurmstepd and their processes behind once slurmd is gone
if alive slurmctld "$ROOT/run/slurmctld.pid" >/dev/null && [ "$(readlink /etc/slurm/slurm.conf 2>/dev/null)" = "$ROOT/etc/slurm.conf" ]; then
    jobs=$(timeout 10 squeue -h -o '%A' 2>/dev/null || true)
    if [ -n "$jobs" ]; then
        echo "slurm: cancelling jobs still in the queue: $(echo $jobs)"
        # shellcheck disable=SC2086
        timeout 10 scancel $jobs 2>/dev/null || true
        for _ in $(seq 100); do
            [ -z "$(timeout 10 squeue -h -o '%A' 2>/dev/null || true)" ] && break
            sleep 0.1
        done
    fi
fi

stopped=()
problems=()
# stop_all NAME:PIDFILE...: SIGTERM to each that runs, then wait up to 30 s for all of them (SIGKILL after)
stop_all() {
    local entry name pidfile pid pids=() names=() files=() i
    for entry in "$@"; do
        name=${entry%%:*}
        pidfile=$ROOT/${entry#*:}
        pid=$(alive "$name" "$pidfile") || continue
        kill -TERM "$pid" 2>/dev/null || true
        pids+=("$pid") names+=("$name") files+=("$pidfile")
    done
    for _ in $(seq 300); do
        local running=0
        for pid in "${pids[@]}"; do [ -d "/proc/$pid" ] && running=1; done
        [ "$running" -eq 0 ] && break
        sleep 0.1
    done
    for i in "${!pids[@]}"; do
        if [ -d "/proc/${pids[$i]}" ]; then
            problems+=("${names[$i]} (pid ${pids[$i]}) ignored SIGTERM for 30 s: killed")
            kill -KILL "${pids[$i]}" 2>/dev/null || true
        fi
        rm -f "${files[$i]}"
        stopped+=("${names[$i]}")
    done
}
# Slurm daemons first (slurmdbd after slurmctld, which reports to it), then what slurmdbd needs
# slurmd.pid: the single slurmd of clusters up.sh started before the spare node
stop_all slurmd:run/slurmd-localhost.pid slurmd:run/slurmd-spare.pid slurmd:run/slurmd.pid slurmctld:run/slurmctld.pid
stop_all slurmdbd:run/slurmdbd.pid
stop_all mariadbd:mysql-run/mariadbd.pid munged:munge/munged.pid

for p in "${problems[@]}"; do echo "slurm: WARNING: $p" >&2; done
if [ ${#stopped[@]} -eq 0 ]; then
    echo "slurm: down (nothing was running)"
else
    echo "slurm: down (stopped ${stopped[*]}), $(elapsed) s"
fi
