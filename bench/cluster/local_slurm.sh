#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, to try dpo-bench's Slurm launcher without a cluster and to run
# its Slurm integration tests (CI starts and stops it through tests/slurm_cluster.py).
#
#   bench/cluster/local_slurm.sh up       install (Debian packages, once) and start: munged, a private MariaDB,
#                                         slurmdbd, slurmctld, slurmd; returns when the node is idle
#   bench/cluster/local_slurm.sh down     stop every daemon it started, by PID
#   bench/cluster/local_slurm.sh status   which daemons run, and sinfo
#   ... --dry-run                          say what it would do, do nothing
#
# Needs root and Debian/Ubuntu (apt). Everything it writes lives in $DPO_BENCH_SLURM_DIR (default
# /var/tmp/dpo-bench-slurm) and /etc/slurm. Settings that matter (docs/environment.md, Slurm on one machine):
#  - submitit polls job states with sacct, and sacct needs slurmdbd: without accounting a cancelled job makes
#    submitit wait forever. slurmdbd runs against a private MariaDB (own datadir, 127.0.0.1, a spare port).
#  - no systemd or cgroups here: proctrack/linuxproc, task/none.
#  - EnforcePartLimits=ALL: a job larger than the node is refused at submission instead of pending forever.
#  - a second partition, short (MaxTime=5 minutes, same node): the tests' job above a partition's time limit.
#  - AuthInfo cred_expire=10 and a 2 s scheduler interval: a requeued job starts again within seconds
#    (the default makes it wait 120 s).
set -euo pipefail

STATE=${DPO_BENCH_SLURM_DIR:-/var/tmp/dpo-bench-slurm}
DB_PORT=${DPO_BENCH_SLURM_DB_PORT:-3399}
CPUS=${DPO_BENCH_SLURM_CPUS:-$(nproc)}          # CPUs the node advertises (config_overrides allows more)
CLUSTER=dpobench
HOST=$(hostname -s)
ETC=/etc/slurm
PACKAGES="slurmctld slurmd slurm-client slurmdbd munge mariadb-server"

say() { echo "[local_slurm] $*"; }
die() { echo "[local_slurm] error: $*" >&2; exit 1; }

alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
  command -v slurmctld >/dev/null && command -v slurmdbd >/dev/null && command -v mariadbd >/dev/null \
    && command -v munged >/dev/null && return
  command -v apt-get >/dev/null || die "apt-get not found: this script needs Debian or Ubuntu"
  say "installing $PACKAGES (Debian packages, once)"
  # Package scripts try to start their services; this policy file tells them not to (we start them below).
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' RETURN
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends $PACKAGES >"$STATE/apt.log" 2>&1 || {
    apt-get update -q >>"$STATE/apt.log" 2>&1
    apt-get install -y -q --no-install-recommends $PACKAGES >>"$STATE/apt.log" 2>&1 \
      || die "apt-get install failed; see $STATE/apt.log"
  }
}

start_munge() {
  alive /run/munge/munged.pid && return
  mkdir -p /run/munge /var/log/munge /var/lib/munge /etc/munge
  [[ -s /etc/munge/munge.key ]] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  chown -R munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge
  chmod 0400 /etc/munge/munge.key
  chmod 0700 /etc/munge /var/log/munge
  runuser -u munge -- /usr/sbin/munged  # daemonises; must run as the munge user
}

start_mariadb() {
  alive "$STATE/mariadb.pid" && return
  if [[ ! -d $STATE/mysql/mysql ]]; then
    mariadb-install-db --no-defaults --datadir="$STATE/mysql" --user=root >"$STATE/mariadb-install.log" 2>&1 \
      || die "mariadb-install-db failed; see $STATE/mariadb-install.log"
  fi
  mariadbd --no-defaults --datadir="$STATE/mysql" --user=root --bind-address=127.0.0.1 --port="$DB_PORT" \
    --socket="$STATE/mariadb.sock" --pid-file="$STATE/mariadb.pid" --skip-log-bin \
    >"$STATE/mariadb.log" 2>&1 &
  for _ in $(seq 60); do
    mariadb --no-defaults -S "$STATE/mariadb.sock" -u root -e 'select 1' >/dev/null 2>&1 && break
    sleep 0.5
  done
  mariadb --no-defaults -S "$STATE/mariadb.sock" -u root -e "
    CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurmdb';
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmdb';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';" || die "MariaDB did not start; see $STATE/mariadb.log"
}

write_configs() {
  mkdir -p "$ETC" "$STATE/ctld" "$STATE/d" "$STATE/log"
  local mem
  mem=$(($(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) - 1024))
  cat >"$ETC/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurmdb
StorageLoc=slurm_acct_db
PidFile=$STATE/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
EOF
  chmod 0600 "$ETC/slurmdbd.conf"  # slurmdbd refuses a readable config (it holds the DB password)
  cat >"$ETC/slurm.conf" <<EOF
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=1024
EnforcePartLimits=ALL
SlurmdParameters=config_overrides
SchedulerParameters=sched_interval=2,bf_interval=2
MailProg=/bin/true
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/log/jobcomp.txt
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
ReturnToService=2
MaxArraySize=10001
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName=short Nodes=ALL Default=NO MaxTime=5 State=UP
EOF
}

wait_for() {  # wait_for <seconds> <what> <command...>
  local seconds=$1 what=$2
  shift 2
  for _ in $(seq $((seconds * 2))); do "$@" >/dev/null 2>&1 && return; sleep 0.5; done
  die "$what did not come up within ${seconds}s; logs in $STATE/log"
}

up() {
  [[ $(id -u) == 0 ]] || die "needs root (it installs packages and runs the Slurm daemons)"
  mkdir -p "$STATE"
  install_packages
  start_munge
  start_mariadb
  write_configs
  if ! alive "$STATE/slurmdbd.pid"; then
    slurmdbd
    wait_for 30 slurmdbd sacctmgr -n list cluster
  fi
  sacctmgr -i -Q add cluster "$CLUSTER" >/dev/null 2>&1 || true
  if alive "$STATE/slurmctld.pid"; then
    scontrol reconfigure >/dev/null 2>&1 || true  # a controller started by an older script: rereads slurm.conf
  else
    slurmctld -i
  fi
  alive "$STATE/slurmd.pid" || slurmd
  wait_for 60 slurmctld sinfo -h
  scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
  wait_for 60 "an idle node" bash -c "sinfo -h -o %t | grep -Eq '^(idle|mix|alloc)'"
  say "up: partitions debug and short (5 min), node $HOST with $CPUS CPUs; state in $STATE"
}

down() {
  local pidfile
  for pidfile in "$STATE/slurmd.pid" "$STATE/slurmctld.pid" "$STATE/slurmdbd.pid" "$STATE/mariadb.pid" \
    /run/munge/munged.pid; do
    if alive "$pidfile"; then
      local pid
      pid=$(cat "$pidfile")
      kill "$pid"
      for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
      say "stopped $(basename "$pidfile" .pid) ($pid)"
    fi
  done
}

status() {
  local pidfile
  for pidfile in /run/munge/munged.pid "$STATE/mariadb.pid" "$STATE/slurmdbd.pid" "$STATE/slurmctld.pid" \
    "$STATE/slurmd.pid"; do
    if alive "$pidfile"; then say "$(basename "$pidfile" .pid): running ($(cat "$pidfile"))"
    else say "$(basename "$pidfile" .pid): stopped"; fi
  done
  command -v sinfo >/dev/null && sinfo 2>/dev/null || true
}

if [[ ${2:-} == --dry-run ]]; then
  say "would run '${1:-status}' (state in $STATE, MariaDB on 127.0.0.1:$DB_PORT, node $HOST with $CPUS CPUs)"
  exit 0
fi

case ${1:-status} in
  up) up ;;
  down) down ;;
  status) status ;;
  *) die "usage: $0 up|down|status" ;;
esac
