# Shared by up.sh and down.sh (sourced): where the cluster's state lives, timing, daemon pids, the lock.
ROOT=${EUROFLOW_SLURM_ROOT:-/tmp/euroflow-slurm}
T0=$(date +%s%N)

# seconds since the script started, one decimal
elapsed() { echo "$(( ($(date +%s%N) - T0) / 100000000 ))" | sed -E 's/([0-9])$/.\1/; s/^\./0./'; }

# pid of a daemon from its pid file when that process is alive and is that daemon, else nothing
alive() {
    local name=$1 pidfile=$2 pid
    [ -r "$pidfile" ] || return 1
    pid=$(tr -dc 0-9 <"$pidfile")
    [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] || return 1
    echo "$pid"
}

# one bring-up or teardown at a time on this machine (fd 9; up.sh closes it for the daemons it starts)
take_lock() {
    if [ -z "${EUROFLOW_SLURM_LOCKED:-}" ] && [ -w "$(dirname "$ROOT")" ]; then
        exec 9>"$ROOT.lock"
        flock -w 300 9 || { echo "slurm: another up.sh/down.sh holds $ROOT.lock for 5 min" >&2; exit 1; }
        export EUROFLOW_SLURM_LOCKED=1
    fi
}
