#!/usr/bin/env bash
# tests/slurm/cluster.sh — a throw-away single-node SLURM cluster on 127.0.0.1 for the workflow's
# cluster test (Debian 12 packages, run as root, works without systemd).
#
#   bash tests/slurm/cluster.sh start    # install packages if missing, start daemons (idempotent)
#   bash tests/slurm/cluster.sh stop     # cancel jobs, stop every daemon this script started
#   bash tests/slurm/cluster.sh status   # sinfo, exit 0 when the node answers
#
# Environment:
#   CONVEXBN_SLURM_DIR   state, spool, logs, pid files, MariaDB data   (default /tmp/convexbn-slurm)
#   CONVEXBN_SLURM_ACCT  1 = run MariaDB + slurmdbd so `sacct` works    (default 1; the Snakemake
#                        slurm plugin queries job status with sacct)
#   CONVEXBN_SLURM_NODE  node name (need not resolve: NodeAddr=127.0.0.1) (default: hostname -s)
#
# Why it looks the way it does (found with Debian 12's SLURM 22.05 and Snakemake 9 with its slurm plugin):
# - slurm.conf must live at /etc/slurm/slurm.conf: the plugin's job step strips SLURM_CONF from
#   the environment of the srun inside each job, which then could not find a config elsewhere.
# - No systemd: every daemon is started directly and daemonizes itself.
# - DefMemPerCPU keeps jobs from each claiming the whole node's memory (they would run serially).
# - Liveness checks ignore zombies and every wait has a deadline; probes run under `timeout`.
set -euo pipefail

DIR=${CONVEXBN_SLURM_DIR:-/tmp/convexbn-slurm}
ACCT=${CONVEXBN_SLURM_ACCT:-1}
NODE=${CONVEXBN_SLURM_NODE:-$(hostname -s)}
DB_PORT=3307
CONF_DIR=/etc/slurm
PKGS_CORE="slurmctld slurmd slurm-client munge"
PKGS_ACCT="slurmdbd mariadb-server"

log() { echo "cluster.sh: $*" >&2; }

# is_up PIDFILE: the process named in PIDFILE exists and is not a zombie
is_up() {
  local pid state
  [ -s "$1" ] || return 1
  pid=$(cat "$1")
  state=$(ps -o stat= -p "$pid" 2>/dev/null) || return 1
  [ "${state#Z}" = "$state" ]
}

# retry_until SECONDS CMD...: run CMD (5 s cap each) until it succeeds, or fail after SECONDS
retry_until() {
  local deadline=$((SECONDS + $1)); shift
  while ! timeout 5 "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then log "gave up waiting for: $*"; return 1; fi
    sleep 0.25
  done
}

# halt PIDFILE...: TERM each live daemon, wait for it to go, KILL after 30 s; remove the pid files
halt() {
  local f pid pids=() deadline=$((SECONDS + 30))
  for f in "$@"; do
    if is_up "$f"; then pid=$(cat "$f"); kill "$pid" 2>/dev/null || true; pids+=("$pid"); fi
    rm -f "$f"
  done
  for pid in "${pids[@]}"; do
    while state=$(ps -o stat= -p "$pid" 2>/dev/null) && [ "${state#Z}" = "$state" ]; do
      if [ "$SECONDS" -ge "$deadline" ]; then kill -9 "$pid" 2>/dev/null || true; break; fi
      sleep 0.2
    done
  done
}

install_packages() {
  local pkgs=$PKGS_CORE
  [ "$ACCT" = 1 ] && pkgs="$pkgs $PKGS_ACCT"
  # shellcheck disable=SC2086
  if dpkg -s $pkgs >/dev/null 2>&1; then return; fi
  log "installing $pkgs"
  apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
}

write_slurm_conf() {
  local mem storage=accounting_storage/none
  mem=$(( $(awk '/^MemTotal:/{print int($2/1024)}' /proc/meminfo) - 1024 ))
  [ "$ACCT" = 1 ] && storage=accounting_storage/slurmdbd
  mkdir -p "$CONF_DIR" "$DIR/state" "$DIR/spool" "$DIR/log"
  cat > "$CONF_DIR/slurm.conf" <<CONF
# written by tests/slurm/cluster.sh (convexbn workflow tests)
ClusterName=ci
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
ReturnToService=2
MpiDefault=none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=$storage
AccountingStorageHost=localhost
MinJobAge=300
KillWait=5
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF
}

start_munge() {
  is_up /run/munge/munged.pid && return
  [ -s /etc/munge/munge.key ] || mungekey -c -k /etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key
  chmod 400 /etc/munge/munge.key
  install -d -o munge -g munge -m 755 /run/munge
  runuser -u munge -- /usr/sbin/munged
  retry_until 10 bash -c 'munge -n | unmunge'
}

start_accounting() {
  local sql=(mariadb --no-defaults -S "$DIR/mysql.sock" -uroot)
  if ! is_up "$DIR/mysql.pid"; then
    if [ ! -d "$DIR/mysql/mysql" ]; then
      mariadb-install-db --user=root --datadir="$DIR/mysql" --skip-test-db \
        --auth-root-authentication-method=socket > "$DIR/log/mariadb-install.log" 2>&1
    fi
    mariadbd --no-defaults --user=root --datadir="$DIR/mysql" --socket="$DIR/mysql.sock" \
      --pid-file="$DIR/mysql.pid" --port=$DB_PORT --bind-address=127.0.0.1 \
      --innodb-buffer-pool-size=64M --log-error="$DIR/log/mariadb.err" </dev/null >/dev/null 2>&1 &
    retry_until 30 "${sql[@]}" -e 'select 1'
    "${sql[@]}" -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
                    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
  fi
  cat > "$CONF_DIR/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=$DIR/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
CONF
  chmod 600 "$CONF_DIR/slurmdbd.conf"
  is_up "$DIR/slurmdbd.pid" || slurmdbd
  retry_until 30 sacctmgr -n list cluster
  if ! sacctmgr -n -P list cluster format=cluster | grep -qx ci; then sacctmgr -i add cluster ci >/dev/null; fi
}

cluster_ready() {
  is_up "$DIR/slurmctld.pid" && is_up "$DIR/slurmd.pid" && timeout 10 scontrol ping >/dev/null 2>&1
}

cmd_status() { timeout 10 sinfo -N -o '%N %t %c %m'; }

cmd_start() {
  install_packages
  if cluster_ready; then log "already running"; cmd_status; return; fi
  write_slurm_conf
  start_munge
  [ "$ACCT" = 1 ] && start_accounting
  if ! is_up "$DIR/slurmctld.pid"; then rm -rf "${DIR:?}/state/"* "${DIR:?}/spool/"*; slurmctld; fi
  is_up "$DIR/slurmd.pid" || slurmd -N "$NODE"
  retry_until 60 bash -c '[ "$(sinfo -h -N -o %t)" = idle ]'
  cmd_status
}

cmd_stop() {
  timeout 10 scancel --user="$(id -un)" 2>/dev/null || true
  halt "$DIR/slurmd.pid" "$DIR/slurmctld.pid"
  halt "$DIR/slurmdbd.pid" "$DIR/mysql.pid" /run/munge/munged.pid
  log "stopped"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
