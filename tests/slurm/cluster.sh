#!/usr/bin/env bash
# A single-node SLURM cluster on localhost for the SLURM integration test (tests/workflow/test_slurm.py).
#
#   tests/slurm/cluster.sh start   # install (Debian packages, as root) and start munged, slurmctld, slurmd
#   tests/slurm/cluster.sh stop    # stop exactly the daemons `start` started (by recorded pid), nothing else
#   tests/slurm/cluster.sh status  # exit 0 when the node is up and idle/mixed/allocated
#
# State lives in $BRAINPIPE_SLURM_BASE (default /tmp/brainpipe-slurm). The node advertises one generic "gpu"
# resource (count only, no device file) so rules that request gpu=1 are scheduled as they would be on a GPU node;
# the jobs then find no CUDA device and run on the CPU. No accounting daemon: the Snakemake profile used by the
# test sets `slurm-status-command: squeue`, which is reliable here because MinJobAge=3600 (>= 120 s, see the
# shared notes) also keeps finished jobs in `squeue -t all` for the test to check after a long run.
set -euo pipefail

BASE=${BRAINPIPE_SLURM_BASE:-/tmp/brainpipe-slurm}
HOST=$(hostname -s)
PIDS=$BASE/pids

need_root() { [ "$(id -u)" = 0 ] || { echo "cluster.sh: must run as root (installs packages, starts daemons)" >&2; exit 2; }; }

install_packages() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null && command -v sinfo >/dev/null; then
    return
  fi
  local guard=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then  # keep package scripts from starting daemons with default configs
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && guard=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
  [ "$guard" = 1 ] && rm -f /usr/sbin/policy-rc.d
  return 0
}

write_config() {
  mkdir -p "$BASE"/{state/ctld,state/d,run,log} "$PIDS" /etc/slurm
  # The node advertises $BRAINPIPE_SLURM_CPUS CPUs (default 8) whatever the machine has (config_overrides): the
  # test's jobs are small and mostly wait on Python start-up, so running several at once keeps the test short.
  local cpus=${BRAINPIPE_SLURM_CPUS:-8} mem hw
  mem=$(slurmd -C | head -n1 | grep -o 'RealMemory=[0-9]*' | cut -d= -f2)
  hw="NodeName=$HOST CPUs=$cpus Boards=1 SocketsPerBoard=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=$mem"
  cat > /etc/slurm/slurm.conf <<CONF
ClusterName=brainpipe-test
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
StateSaveLocation=$BASE/state/ctld
SlurmdSpoolDir=$BASE/state/d
SlurmctldPidFile=$BASE/run/slurmctld.pid
SlurmdPidFile=$BASE/run/slurmd.pid
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
EnforcePartLimits=ALL
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
GresTypes=gpu
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=3600
SlurmdParameters=config_overrides
KillWait=5
Waittime=0
$hw NodeAddr=127.0.0.1 Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
  # a count-only gpu is refused by gres/gpu ("count reported lower than configured"); /dev/null stands in
  echo "NodeName=$HOST Name=gpu File=/dev/null" > /etc/slurm/gres.conf
}

wait_for() {  # wait_for <seconds> <command...>
  local n=$1; shift
  for _ in $(seq 1 "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  return 1
}

node_up() { sinfo -h -n "$HOST" -o %T | grep -Eq '^(idle|mixed|allocated)'; }

start() {
  need_root
  if [ -s "$PIDS/slurmd.pid" ] && node_up; then echo "cluster.sh: already running"; return 0; fi
  install_packages
  write_config
  mkdir -p /run/munge && chown munge:munge /run/munge
  [ -s /etc/munge/munge.key ] || { mungekey --create --force 2>/dev/null || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
  if ! (munge -n | unmunge) >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/brainpipe-munged.pid
    wait_for 20 sh -c 'munge -n | unmunge'
    cp /run/munge/brainpipe-munged.pid "$PIDS/munged.pid"
  fi
  /usr/sbin/slurmctld
  wait_for 30 scontrol ping || { echo "cluster.sh: slurmctld did not come up (see $BASE/log/slurmctld.log)" >&2; exit 1; }
  cp "$BASE/run/slurmctld.pid" "$PIDS/slurmctld.pid"
  /usr/sbin/slurmd
  wait_for 30 test -s "$BASE/run/slurmd.pid" && cp "$BASE/run/slurmd.pid" "$PIDS/slurmd.pid"
  scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
  wait_for 60 node_up || { echo "cluster.sh: node $HOST did not become idle (see $BASE/log/)" >&2; exit 1; }
  srun -N1 -n1 -t 1 hostname >/dev/null
  echo "cluster.sh: SLURM up on $HOST ($BASE)"
}

stop() {
  [ -d "$PIDS" ] || return 0
  scancel --user=root >/dev/null 2>&1 || true
  for d in slurmd slurmctld munged; do
    f=$PIDS/$d.pid
    [ -s "$f" ] || continue
    pid=$(cat "$f")
    if [ -r "/proc/$pid/comm" ] && [ "$(cat /proc/$pid/comm)" = "$d" ]; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 20); do [ -d "/proc/$pid" ] || break; sleep 0.5; done
      [ -d "/proc/$pid" ] && [ "$(cat /proc/$pid/comm 2>/dev/null)" = "$d" ] && kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
  echo "cluster.sh: stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) node_up ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
