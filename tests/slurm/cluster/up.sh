#!/usr/bin/env bash
# Bring up a real Slurm cluster on localhost for the tests marked `slurm`: munged, a private MariaDB,
# slurmdbd, slurmctld and two slurmd (`-N localhost`, `-N spare`: two nodes on one machine), all from
# Debian packages.
# Idempotent: what already runs is kept. State, logs and pid files live under $EUROFLOW_SLURM_ROOT
# (default /tmp/euroflow-slurm); /etc/slurm/{slurm,gres,slurmdbd}.conf link there.
#   up.sh           bring the cluster up (installs the packages first when root on Debian)
#   up.sh --check   only say whether it is up (exit 0) or not (exit 1); starts nothing
# Stop it with down.sh. Needs root.
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"  # the daemons live in sbin, missing from some root PATHs

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$HERE/common.sh"
DB_PORT=${EUROFLOW_SLURM_DB_PORT:-3307}
CLUSTER=euroflow
ACCOUNT=euroflow
NODE=localhost
SPARE=spare  # the second slurmd on this machine (partition failover): tests fail one node and run on the other
PACKAGES=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server)
COMMANDS=(slurmctld slurmd slurmdbd sbatch sacct sacctmgr munged mariadbd mariadb-install-db)

say() { echo "slurm: $*"; }
fail() {
    {
        echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
        echo "!! slurm: FAILED to bring up the test cluster: $*"
        for log in "${FAIL_LOGS[@]}"; do
            [ -s "$log" ] && { echo "!! --- last lines of $log"; tail -n 15 "$log" | sed 's/^/!!   /'; }
        done
        echo "!! state and logs: $ROOT   stop what started: bash $HERE/down.sh"
        echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
    } >&2
    exit 1
}
FAIL_LOGS=()


# wait_for SECONDS WHAT [--daemon NAME PIDFILE] COMMAND...: poll COMMAND every 0.1 s until it succeeds;
# with --daemon, give up as soon as that daemon is gone (after a 3 s grace for its pid file)
wait_for() {
    local limit=$1 what=$2 name="" pidfile="" start deadline
    shift 2
    if [ "$1" = "--daemon" ]; then name=$2 pidfile=$3; shift 3; fi
    start=$(date +%s)
    deadline=$(( start + limit ))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || fail "$what did not happen within ${limit} s"
        if [ -n "$name" ] && [ $(( $(date +%s) - start )) -ge 3 ] && ! alive "$name" "$pidfile" >/dev/null; then
            fail "$name exited before $what"
        fi
        sleep 0.1
    done
}

# detach LOG COMMAND...: run COMMAND with stdin /dev/null, stdout+stderr appended to LOG and no other
# inherited file descriptor (a daemon holding a caller's pipe open keeps e.g. a CI log reader waiting)
detach() {
    local log=$1
    shift
    (
        for fd in /proc/$BASHPID/fd/*; do
            fd=${fd##*/}
            if [ "$fd" -gt 2 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
        done
        exec "$@" </dev/null >>"$log" 2>&1
    )
}

node_state() { sinfo -h -N -n "${1:-$NODE}" -o '%t' 2>/dev/null | head -n1; }
node_ready() { case "$(node_state "${1:-$NODE}")" in idle | mix | alloc) return 0 ;; *) return 1 ;; esac; }

is_up() {
    alive mariadbd "$ROOT/mysql-run/mariadbd.pid" >/dev/null &&
        alive slurmdbd "$ROOT/run/slurmdbd.pid" >/dev/null &&
        alive slurmctld "$ROOT/run/slurmctld.pid" >/dev/null &&
        alive slurmd "$ROOT/run/slurmd-$NODE.pid" >/dev/null &&
        alive slurmd "$ROOT/run/slurmd-$SPARE.pid" >/dev/null &&
        [ "$(readlink /etc/slurm/slurm.conf 2>/dev/null)" = "$ROOT/etc/slurm.conf" ] &&
        node_ready "$NODE" && node_ready "$SPARE" && sacct -n -X -o JobID >/dev/null 2>&1
}

if [ "${1:-}" = "--check" ]; then
    if is_up; then say "up, nodes $NODE $(node_state "$NODE") and $SPARE $(node_state "$SPARE")"; exit 0; else say "not up"; exit 1; fi
fi

[ "$(id -u)" -eq 0 ] || fail "needs root (daemons, /etc/slurm, /run/munge); run as root, e.g. in CI or a container"

take_lock

# ---- packages -------------------------------------------------------------------------------
missing=()
for cmd in "${COMMANDS[@]}"; do command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd"); done
if [ ${#missing[@]} -gt 0 ]; then
    [ -r /etc/debian_version ] || fail "missing ${missing[*]} and this is not Debian: install ${PACKAGES[*]}"
    say "installing ${PACKAGES[*]} with apt-get (missing: ${missing[*]})"
    t_apt=$(date +%s)
    mkdir -p "$ROOT/log"
    FAIL_LOGS=("$ROOT/log/apt.log")
    { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}"; } \
        >"$ROOT/log/apt.log" 2>&1 </dev/null || fail "apt-get install failed"
    say "packages installed in $(( $(date +%s) - t_apt )) s"
    for cmd in "${COMMANDS[@]}"; do command -v "$cmd" >/dev/null 2>&1 || fail "$cmd still missing after apt-get install"; done
fi

# ---- configuration ------------------------------------------------------------------------
mkdir -p "$ROOT"/{etc,log,run,dev,spool/slurmctld,spool/slurmd-$NODE,spool/slurmd-$SPARE}
chmod 755 "$ROOT"
CPUS=$(nproc)
MEM_MB=$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)
render() {  # template -> file, only rewritten when the content changes; prints "changed" if so
    local src=$1 dst=$2 tmp
    tmp=$(mktemp "$dst.XXXXXX")
    sed -e "s|@ROOT@|$ROOT|g" -e "s|@CPUS@|$CPUS|g" -e "s|@MEM_MB@|$MEM_MB|g" -e "s|@DB_PORT@|$DB_PORT|g" "$src" >"$tmp"
    if [ -f "$dst" ] && cmp -s "$tmp" "$dst"; then rm -f "$tmp"; else mv -f "$tmp" "$dst"; echo changed; fi
}
changed=""
changed+=$(render "$HERE/slurm.conf.in" "$ROOT/etc/slurm.conf")
changed+=$(render "$HERE/gres.conf.in" "$ROOT/etc/gres.conf")
changed+=$(render "$HERE/slurmdbd.conf.in" "$ROOT/etc/slurmdbd.conf")
chmod 644 "$ROOT/etc/slurm.conf" "$ROOT/etc/gres.conf"
chmod 600 "$ROOT/etc/slurmdbd.conf"
if [ -n "$changed" ] && alive slurmctld "$ROOT/run/slurmctld.pid" >/dev/null; then
    say "configuration changed: restarting the running daemons"
    bash "$HERE/down.sh"
fi

# the job-step helper of the Snakemake plugin drops SLURM_CONF before its inner srun: use the default path
mkdir -p /etc/slurm
for f in slurm.conf gres.conf slurmdbd.conf; do
    if [ -e "/etc/slurm/$f" ] && [ ! -L "/etc/slurm/$f" ]; then
        fail "/etc/slurm/$f is a real file (another Slurm set-up?): move it away, up.sh links its own there"
    fi
    ln -sfn "$ROOT/etc/$f" "/etc/slurm/$f"
done

# the training launcher's rendezvous address is the first node's name, as on a real cluster: it must resolve
if ! getent hosts "$SPARE" >/dev/null 2>&1; then
    { echo "127.0.0.1 $SPARE  # euroflow test cluster (tests/slurm/cluster/up.sh)" >>/etc/hosts; } 2>/dev/null ||
        say "WARNING: could not add $SPARE to /etc/hosts: training jobs on node $SPARE cannot start"
fi

if [ -z "$changed" ] && is_up; then  # already up with this configuration
    say "up, nodes $NODE and $SPARE, $(elapsed) s (was already up)"
    exit 0
fi

# fake GPUs: character devices like /dev/null
for i in 0 1; do
    [ -c "$ROOT/dev/nvidia$i" ] || { rm -f "$ROOT/dev/nvidia$i"; mknod -m 666 "$ROOT/dev/nvidia$i" c 1 3; }
done

# ---- munge ----------------------------------------------------------------------------------
mkdir -p "$ROOT/munge" /run/munge
chown munge: "$ROOT/munge" /run/munge
chmod 700 "$ROOT/munge"
chmod 755 /run/munge
KEY=/etc/munge/munge.key
if [ ! -s "$KEY" ]; then
    KEY=$ROOT/munge/munge.key
    [ -s "$KEY" ] || runuser -u munge -- mungekey --create --keyfile="$KEY" >/dev/null 2>&1 || fail "could not create a munge key"
fi
if alive munged "$ROOT/munge/munged.pid" >/dev/null; then
    :
elif munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "using the munged that already answers on /run/munge (not ours: down.sh leaves it alone)"
else
    FAIL_LOGS=("$ROOT/munge/munged.log")
    detach "$ROOT/log/munged.out" runuser -u munge -- munged --key-file="$KEY" \
        --log-file="$ROOT/munge/munged.log" --pid-file="$ROOT/munge/munged.pid" \
        --seed-file="$ROOT/munge/munged.seed" || fail "munged did not start"
    wait_for 10 "munged answering" --daemon munged "$ROOT/munge/munged.pid" sh -c 'munge -n | unmunge'
fi

# ---- MariaDB (private instance, datadir and socket under $ROOT) ------------------------------------
DATADIR=$ROOT/mysql
SOCK=$ROOT/mysql-run/mariadb.sock
FAIL_LOGS=("$ROOT/log/mariadb.log")
if [ ! -d "$DATADIR/mysql" ]; then
    rm -rf "$DATADIR"
    mkdir -p "$DATADIR"
    chown mysql: "$DATADIR"
    mariadb-install-db --no-defaults --datadir="$DATADIR" --user=mysql --skip-test-db \
        --auth-root-authentication-method=socket >"$ROOT/log/mariadb-install-db.log" 2>&1 </dev/null ||
        { FAIL_LOGS=("$ROOT/log/mariadb-install-db.log"); fail "mariadb-install-db failed"; }
fi
mkdir -p "$ROOT/mysql-run"
chown mysql: "$ROOT/mysql-run"  # mariadbd (as mysql) writes its pid file and socket there
if ! alive mariadbd "$ROOT/mysql-run/mariadbd.pid" >/dev/null; then
    touch "$ROOT/log/mariadb.log" && chown mysql: "$ROOT/log/mariadb.log"
    detach "$ROOT/log/mariadb.log" setsid --fork mariadbd --no-defaults --user=mysql --datadir="$DATADIR" --socket="$SOCK" \
        --pid-file="$ROOT/mysql-run/mariadbd.pid" --port="$DB_PORT" --bind-address=127.0.0.1 \
        --log-error="$ROOT/log/mariadb.log" --skip-name-resolve --skip-log-bin \
        --innodb-buffer-pool-size=128M --innodb-log-file-size=64M --innodb-lock-wait-timeout=900 \
        --innodb-flush-log-at-trx-commit=2 --performance-schema=OFF
    wait_for 60 "MariaDB answering on $SOCK" --daemon mariadbd "$ROOT/mysql-run/mariadbd.pid" mariadb-admin --no-defaults --socket="$SOCK" -uroot ping
fi
mariadb --no-defaults --socket="$SOCK" -uroot <<'SQL' || fail "could not create the slurm database user"
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'euroflow-test-only';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'euroflow-test-only';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
SQL

# ---- slurmdbd and the associations the Snakemake plugin checks (sacctmgr list user root) -------------
FAIL_LOGS=("$ROOT/log/slurmdbd.log")
if ! alive slurmdbd "$ROOT/run/slurmdbd.pid" >/dev/null; then
    detach "$ROOT/log/slurmdbd.out" slurmdbd || fail "slurmdbd did not start"
    wait_for 60 "slurmdbd answering" --daemon slurmdbd "$ROOT/run/slurmdbd.pid" sacctmgr -n list cluster
fi
sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER" ||
    sacctmgr -i add cluster "$CLUSTER" >/dev/null || fail "sacctmgr add cluster $CLUSTER"
sacctmgr -n -P list account "$ACCOUNT" format=account | grep -qx "$ACCOUNT" ||
    sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" description="euroflow tests" organization=euroflow >/dev/null ||
    fail "sacctmgr add account $ACCOUNT"
sacctmgr -n -P list assoc cluster="$CLUSTER" account="$ACCOUNT" user=root format=user | grep -qx root ||
    sacctmgr -i add user root account="$ACCOUNT" cluster="$CLUSTER" >/dev/null || fail "sacctmgr add user root"
[ "$(sacctmgr -n -P list user root format=defaultaccount)" = "$ACCOUNT" ] ||
    sacctmgr -i modify user root set defaultaccount="$ACCOUNT" >/dev/null || fail "sacctmgr set default account"

# ---- slurmctld, slurmd ----------------------------------------------------------------------------
FAIL_LOGS=("$ROOT/log/slurmctld.log")
if ! alive slurmctld "$ROOT/run/slurmctld.pid" >/dev/null; then
    detach "$ROOT/log/slurmctld.out" slurmctld || fail "slurmctld did not start"
    wait_for 30 "slurmctld answering" --daemon slurmctld "$ROOT/run/slurmctld.pid" scontrol ping
fi
FAIL_LOGS=("$ROOT/log/slurmd-$NODE.log" "$ROOT/log/slurmd-$SPARE.log" "$ROOT/log/slurmctld.log")
for node in "$NODE" "$SPARE"; do
    if ! alive slurmd "$ROOT/run/slurmd-$node.pid" >/dev/null; then
        detach "$ROOT/log/slurmd-$node.out" slurmd -N "$node" || fail "slurmd -N $node did not start"
    fi
done
deadline=$(( $(date +%s) + 60 ))
for node in "$NODE" "$SPARE"; do
    until node_ready "$node"; do  # a node a test failed or drained (and did not live to resume) comes back
        state=$(node_state "$node")
        case "$state" in
            down* | drain* | drng* | fail*) scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true ;;
        esac
        [ "$(date +%s)" -lt "$deadline" ] || fail "node $node is '${state:-unknown}', not idle, after 60 s"
        sleep 0.2
    done
done
FAIL_LOGS=("$ROOT/log/slurmdbd.log")
wait_for 30 "sacct answering" sacct -n -X -o JobID

say "up, nodes $NODE $(node_state "$NODE") and $SPARE $(node_state "$SPARE"), $(elapsed) s"
