#!/usr/bin/env bash
# slurm-start.sh: a real Slurm cluster on this one machine, for the `slurm` tests.
#
# Installs Debian's Slurm and munge packages (once), writes /etc/slurm/slurm.conf, and starts
# munged, slurmctld and one slurmd per emulated node. Idempotent: with everything up and the
# config unchanged it only checks and exits. Must run as root (CI and the dev machines do).
# Stop with slurm-stop.sh, which kills by pidfile only.
#
# The cluster (GB_SLURM_NODES nodes of GB_SLURM_CPUS advertised CPUs; more than the machine
# has, so batches of short jobs start at once):
#   normal     node1..node(N-1)   default, not preemptible
#   short      node1..node(N-1)   MaxTime=1 minute, for walltime continuation
#   scavenger  nodeN              PriorityTier=1, PreemptMode=REQUEUE, GraceTime=GB_SLURM_GRACE
#   priority   nodeN              PriorityTier=10: its jobs preempt scavenger's
#
# Facts this script is built on (Slurm 22.05 from Debian 12, no systemd, no cgroups):
#  - maintainer scripts must not start daemons: a temporary policy-rc.d that exits 101;
#  - /run/munge does not exist without systemd; munged runs as munge with --force;
#  - daemons must not inherit our lock fd (else the next run blocks): 9>&- on each start;
#  - a requeued job waits cred_expire (120 s by default) before it may run again: 10 s here;
#  - without DefMemPerCPU a job is given the whole node's memory and jobs serialize;
#  - advertising more CPUs than exist needs SlurmdParameters=config_overrides;
#  - a batch script gets no signal at preemption unless submitted with --signal=B:TERM@N and
#    slurmctld runs with preempt_send_user_signal;
#  - sinfo may say idle for a while after slurmd died, so readiness also checks the pid.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NODES=${GB_SLURM_NODES:-3}
CPUS=${GB_SLURM_CPUS:-4}
GRACE=${GB_SLURM_GRACE:-10}
READY_S=${GB_SLURM_READY_S:-60}
[[ $NODES =~ ^[2-9]$ ]] || { echo "slurm-start: GB_SLURM_NODES must be 2..9" >&2; exit 2; }
[[ $CPUS =~ ^[1-9][0-9]*$ ]] || { echo "slurm-start: GB_SLURM_CPUS must be a number" >&2; exit 2; }

[ "$(id -u)" = 0 ] || fail "run as root"

CONF=/etc/slurm/slurm.conf
RUN=/run/slurm
LOGS=/var/log/slurm
STATE=/var/lib/slurm
MUNGE_PID=/run/munge/munged.pid

mkdir -p /run/lock
exec 9>/run/lock/gridbridge-slurm.lock
flock -w 300 9 || fail "another slurm-start/slurm-stop holds /run/lock/gridbridge-slurm.lock"

# 1. packages ---------------------------------------------------------------------------
want=(munge slurmctld slurmd slurm-client)
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi

# 2. munge ------------------------------------------------------------------------------
install -d -o munge -g munge -m 700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 755 /run/munge
[ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
if ! running $MUNGE_PID /usr/sbin/munged; then
  runuser -u munge -- /usr/sbin/munged --force --pid-file=$MUNGE_PID 9>&- || true
fi
for i in $(seq 50); do
  munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
  [ "$i" = 50 ] && fail "munge does not work; see /var/log/munge/munged.log"
  sleep 0.1
done

# 3. slurm.conf ---------------------------------------------------------------------------
HOST=$(hostname -s)
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / NODES / 2 ))
LAST=node$NODES
WORKERS=node[1-$((NODES - 1))]
conf() {
  cat <<EOF
# Written by gridbridge deploy/dev/slurm-start.sh: a test cluster on one host.
ClusterName=gridbridge
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=cred_expire=10
SlurmctldPort=6817
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d-%n
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd-%n.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$LOGS/jobcomp.log
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=2,sched_interval=2,batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
ReturnToService=2
MinJobAge=300
KillWait=5
SlurmdTimeout=120
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
SlurmctldParameters=preempt_send_user_signal
SlurmdParameters=config_overrides
NodeName=node[1-$NODES] NodeHostname=$HOST NodeAddr=127.0.0.1 Port=[17001-$((17000 + NODES))] CPUs=$CPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$CPUS ThreadsPerCore=1 RealMemory=$MEM_MB State=UNKNOWN
PartitionName=normal    Nodes=$WORKERS Default=YES MaxTime=INFINITE State=UP PriorityTier=5  PreemptMode=OFF
PartitionName=short     Nodes=$WORKERS Default=NO  MaxTime=1        State=UP PriorityTier=5  PreemptMode=OFF
PartitionName=scavenger Nodes=$LAST    Default=NO  MaxTime=INFINITE State=UP PriorityTier=1  PreemptMode=REQUEUE GraceTime=$GRACE
PartitionName=priority  Nodes=$LAST    Default=NO  MaxTime=INFINITE State=UP PriorityTier=10 PreemptMode=OFF
EOF
}
install -d -m 755 /etc/slurm $RUN $LOGS $STATE
install -d -m 700 $STATE/ctld
NODE_NAMES=$(seq -f 'node%g' 1 "$NODES")
for n in $NODE_NAMES; do install -d -m 700 "$STATE/d-$n"; done
changed=0
if [ "$(cat $CONF 2>/dev/null)" != "$(conf)" ]; then
  conf > $CONF.new && chmod 644 $CONF.new && mv -f $CONF.new $CONF
  changed=1
fi

# 4. daemons ------------------------------------------------------------------------------
if [ $changed = 1 ]; then
  for f in "$RUN"/slurmd-*.pid; do [ -e "$f" ] && stop_pidfile "$f" /usr/sbin/slurmd; done
  stop_pidfile $RUN/slurmctld.pid /usr/sbin/slurmctld
fi
if ! running $RUN/slurmctld.pid /usr/sbin/slurmctld; then
  args=()
  # a new config may name other nodes than the saved state: start clean (ids restart at 1)
  if [ $changed = 1 ]; then
    args=(-c)
    [ -s $LOGS/jobcomp.log ] && mv -f $LOGS/jobcomp.log $LOGS/jobcomp.log.old
  fi
  say "starting slurmctld ${args[*]:-}"
  /usr/sbin/slurmctld "${args[@]}" </dev/null 9>&- || fail "slurmctld did not start; see $LOGS/slurmctld.log"
fi
for i in $(seq 100); do
  scontrol ping 2>/dev/null | grep -q 'is UP' && break
  [ "$i" = 100 ] && fail "slurmctld does not answer; see $LOGS/slurmctld.log"
  sleep 0.2
done
t0=$(date +%s)
for n in $NODE_NAMES; do
  running "$RUN/slurmd-$n.pid" /usr/sbin/slurmd && continue
  say "starting slurmd -N $n"
  /usr/sbin/slurmd -N "$n" </dev/null 9>&- || fail "slurmd -N $n did not start; see $LOGS/slurmd-$n.log"
done

# 5. ready: every slurmd alive and its node usable ---------------------------------------
resumed=""
while :; do
  bad=""
  for n in $NODE_NAMES; do
    running "$RUN/slurmd-$n.pid" /usr/sbin/slurmd || {
      [ $(( $(date +%s) - t0 )) -ge 3 ] && fail "slurmd -N $n died: $(tail -n 3 "$LOGS/slurmd-$n.log" 2>/dev/null | tr '\n' ' ')"
      bad="$bad $n:starting"; continue; }
    state=$(sinfo -h -N -n "$n" -o '%T' 2>/dev/null | head -1)
    case $state in
      idle|mixed|allocated|completing) ;;
      drained*|draining*|down*)
        case " $resumed " in *" $n "*) ;; *) scontrol update NodeName="$n" State=RESUME 2>/dev/null || true; resumed="$resumed $n";; esac
        bad="$bad $n:$state" ;;
      *) bad="$bad $n:${state:-unknown}" ;;
    esac
  done
  [ -z "$bad" ] && break
  [ $(( $(date +%s) - t0 )) -ge "$READY_S" ] && fail "nodes not ready after ${READY_S}s:$bad; see $LOGS"
  sleep 0.2
done
say "ready: $(sinfo -h -o '%P %D %T' | tr '\n' ' ')"
