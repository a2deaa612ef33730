#!/usr/bin/env bash
# Several hosts under SLURM: generate an sbatch script that starts one JAX process per node
# (default) or one per GPU (--per-gpu) with srun, and submit it.
set -euo pipefail

usage() {
  cat <<EOF
Usage: $PROG --nodes N --workdir DIR [options] [-- ENTRYPOINT_ARGS...]

Writes an sbatch script and submits it with 'sbatch'. In the job, the first node of
\$SLURM_JOB_NODELIST ('scontrol show hostnames') is the coordinator, and srun starts on every task
  PYTHON -m MODULE --coordinator_address=\$COORDINATOR_ADDRESS --num_processes=\$SLURM_NTASKS \\
      --process_id=\$SLURM_PROCID --workdir=DIR [--config=PATH] ENTRYPOINT_ARGS...
One task per node sees all the node's GPUs (default); with --per-gpu there is one task per GPU
and each task sees only its own GPU (CUDA_VISIBLE_DEVICES picked by \$SLURM_LOCALID).
The environment (python with the package and jax[cuda12] installed) is the user's: activate it
with --setup. Nothing site-specific (account, partition, ...) is assumed: pass what your
cluster needs.

Required:
  --nodes N              number of nodes
  --workdir DIR          passed to the entrypoint as --workdir=DIR (shared path or gs://...)

Options:
  --module MOD           entrypoint module (default: sdnet_jax.main; e.g. sdnet_jax.evaluate)
  --config PATH          shorthand for the entrypoint flag --config=PATH; sdnet_jax.main needs a
                         config, given here or as --config=... after '--'
  --per-gpu              one process per GPU instead of one per node (needs --gpus-per-node)
  --gpus-per-node G      GPUs to request per node (#SBATCH --gpus-per-node=G)
  --gres                 request them as #SBATCH --gres=gpu:G instead (older Slurm)
  --cpus-per-task C      #SBATCH --cpus-per-task=C
  --mem MEM              #SBATCH --mem=MEM (e.g. 200G)
  --time T               #SBATCH --time=T (e.g. 24:00:00)
  --partition P          #SBATCH --partition=P
  --account A            #SBATCH --account=A
  --qos Q                #SBATCH --qos=Q
  --job-name NAME        #SBATCH --job-name=NAME (default: sdnet)
  --sbatch-arg ARG       extra #SBATCH line, repeatable (e.g. --sbatch-arg=--constraint=a100)
  --setup CMD            shell line run in the job before srun, repeatable
                         (e.g. --setup 'source ~/venvs/sdnet/bin/activate' --setup 'module load cuda')
  --python PY            interpreter on the nodes (default: python3, i.e. the one --setup activates)
  --port PORT            coordinator port (default: 10000 + \$SLURM_JOB_ID % 50000)
  --chdir DIR            job working directory (default: the current directory)
  --log-dir DIR          where SLURM writes %x-%j.out (default: CHDIR/slurm_logs; created)
  --script-out FILE      where to write the sbatch script (default: LOG_DIR/<job-name>-<time>.sbatch)
  --dry-run              print the generated script and the sbatch command; write and submit nothing
  -h, --help             this help

Examples:
  $PROG --nodes 4 --gpus-per-node 8 --workdir /shared/runs/sdnet18 \\
      --setup 'source ~/venvs/sdnet/bin/activate' -- --config=configs/imagenet_sdnet18.py
  $PROG --nodes 2 --gpus-per-node 4 --per-gpu --partition PARTITION --time 04:00:00 \\
      --workdir /shared/runs/sdnet18 --module sdnet_jax.evaluate
EOF
}

_self=${BASH_SOURCE[0]}  # follow symlinks to this file's real directory, which has _common.sh
while [[ -L $_self ]]; do _to=$(readlink "$_self"); [[ $_to == /* ]] || _to=$(dirname "$_self")/$_to; _self=$_to; done
# shellcheck source-path=SCRIPTDIR source=_common.sh
source "$(dirname "$_self")/_common.sh" || exit 2  # PROG, REPO_ROOT, die, shq, common_opt, ...

# (WORKDIR MODULE CONFIG DRY_RUN ENTRY_ARGS: set in _common.sh; PYTHON_BIN: here the nodes' python3)
NODES="" PER_GPU=0 GPUS_PER_NODE="" CPUS_PER_TASK="" MEM="" TIME="" PARTITION="" ACCOUNT=""
QOS="" JOB_NAME="sdnet" USE_GRES=0 PYTHON_BIN="python3" PORT="" CHDIR="" LOG_DIR="" SCRIPT_OUT=""
SBATCH_ARGS=() SETUP=()

while [[ $# -gt 0 ]]; do
  case "$1" in
    --nodes) need_value "$@"; NODES=$2; shift 2 ;;
    --nodes=*) NODES=${1#*=}; shift ;;
    --per-gpu) PER_GPU=1; shift ;;
    --gres) USE_GRES=1; shift ;;
    --gpus-per-node) need_value "$@"; GPUS_PER_NODE=$2; shift 2 ;;
    --gpus-per-node=*) GPUS_PER_NODE=${1#*=}; shift ;;
    --cpus-per-task) need_value "$@"; CPUS_PER_TASK=$2; shift 2 ;;
    --cpus-per-task=*) CPUS_PER_TASK=${1#*=}; shift ;;
    --mem) need_value "$@"; MEM=$2; shift 2 ;;
    --mem=*) MEM=${1#*=}; shift ;;
    --time) need_value "$@"; TIME=$2; shift 2 ;;
    --time=*) TIME=${1#*=}; shift ;;
    --partition) need_value "$@"; PARTITION=$2; shift 2 ;;
    --partition=*) PARTITION=${1#*=}; shift ;;
    --account) need_value "$@"; ACCOUNT=$2; shift 2 ;;
    --account=*) ACCOUNT=${1#*=}; shift ;;
    --qos) need_value "$@"; QOS=$2; shift 2 ;;
    --qos=*) QOS=${1#*=}; shift ;;
    --job-name) need_value "$@"; JOB_NAME=$2; shift 2 ;;
    --job-name=*) JOB_NAME=${1#*=}; shift ;;
    --sbatch-arg) need_value "$@"; SBATCH_ARGS+=("$2"); shift 2 ;;
    --sbatch-arg=*) SBATCH_ARGS+=("${1#*=}"); shift ;;
    --setup) need_value "$@"; SETUP+=("$2"); shift 2 ;;
    --setup=*) SETUP+=("${1#*=}"); shift ;;
    --port) need_value "$@"; PORT=$2; shift 2 ;;
    --port=*) PORT=${1#*=}; shift ;;
    --chdir) need_value "$@"; CHDIR=$2; shift 2 ;;
    --chdir=*) CHDIR=${1#*=}; shift ;;
    --log-dir) need_value "$@"; LOG_DIR=$2; shift 2 ;;
    --log-dir=*) LOG_DIR=${1#*=}; shift ;;
    --script-out) need_value "$@"; SCRIPT_OUT=$2; shift 2 ;;
    --script-out=*) SCRIPT_OUT=${1#*=}; shift ;;
    *) common_opt "$@"; shift "$OPT_SHIFT" ;;  # --workdir --module --config --python --dry-run --help --
  esac
done

[[ -n "$NODES" ]] || die "missing required argument --nodes"
[[ -n "$WORKDIR" ]] || die "missing required argument --workdir"
[[ "$NODES" =~ ^[1-9][0-9]*$ ]] || die "--nodes must be a positive integer, got '$NODES'"
if [[ $PER_GPU -eq 1 && -z "$GPUS_PER_NODE" ]]; then
  die "missing required argument --gpus-per-node (needed by --per-gpu)"
fi
[[ -z "$GPUS_PER_NODE" || "$GPUS_PER_NODE" =~ ^[1-9][0-9]*$ ]] \
  || die "--gpus-per-node must be a positive integer, got '$GPUS_PER_NODE'"
[[ $USE_GRES -eq 0 || -n "$GPUS_PER_NODE" ]] || die "missing required argument --gpus-per-node (needed by --gres)"
[[ -z "$PORT" || "$PORT" =~ ^[0-9]+$ ]] || die "--port must be a number, got '$PORT'"
check_module
[[ "$JOB_NAME" =~ ^[A-Za-z0-9_.-]+$ ]] || die "--job-name may only use letters, digits, '_', '.', '-'"
check_config

abspath() { case "$1" in /*) printf '%s' "$1" ;; *) printf '%s/%s' "$PWD" "$1" ;; esac; }
CHDIR=$(abspath "${CHDIR:-$PWD}")
LOG_DIR=$(abspath "${LOG_DIR:-$CHDIR/slurm_logs}")
SCRIPT_OUT=$(abspath "${SCRIPT_OUT:-$LOG_DIR/$JOB_NAME-$(date +%Y%m%d-%H%M%S).sbatch}")

TASKS_PER_NODE=1
[[ $PER_GPU -eq 1 ]] && TASKS_PER_NODE=$GPUS_PER_NODE


# The entrypoint's own arguments, quoted for the batch shell.
TASK_ARGS="--workdir=$(shq "$WORKDIR")"
[[ -n "$CONFIG" ]] && TASK_ARGS+=" --config=$(shq "$CONFIG")"
for a in ${ENTRY_ARGS[@]+"${ENTRY_ARGS[@]}"}; do TASK_ARGS+=" $(shq "$a")"; done

generate() {
  echo "#!/bin/bash"
  echo "# Generated by launch/slurm.sh; submit with: sbatch $(shq "$SCRIPT_OUT")"
  echo "#SBATCH --job-name=$JOB_NAME"
  echo "#SBATCH --nodes=$NODES"
  echo "#SBATCH --ntasks-per-node=$TASKS_PER_NODE"
  if [[ -n "$GPUS_PER_NODE" ]]; then
    if [[ $USE_GRES -eq 1 ]]; then echo "#SBATCH --gres=gpu:$GPUS_PER_NODE"
    else echo "#SBATCH --gpus-per-node=$GPUS_PER_NODE"
    fi
  fi
  [[ -n "$CPUS_PER_TASK" ]] && echo "#SBATCH --cpus-per-task=$CPUS_PER_TASK"
  [[ -n "$MEM" ]] && echo "#SBATCH --mem=$MEM"
  [[ -n "$TIME" ]] && echo "#SBATCH --time=$TIME"
  [[ -n "$PARTITION" ]] && echo "#SBATCH --partition=$PARTITION"
  [[ -n "$ACCOUNT" ]] && echo "#SBATCH --account=$ACCOUNT"
  [[ -n "$QOS" ]] && echo "#SBATCH --qos=$QOS"
  echo "#SBATCH --chdir=$CHDIR"
  echo "#SBATCH --output=$LOG_DIR/%x-%j.out"
  for a in ${SBATCH_ARGS[@]+"${SBATCH_ARGS[@]}"}; do echo "#SBATCH $a"; done
  echo
  echo "set -eo pipefail  # (no -u: site activate/module scripts often read unset variables)"
  for s in ${SETUP[@]+"${SETUP[@]}"}; do echo "$s"; done
  echo
  echo "export SDNET_PYTHON=$(shq "$PYTHON_BIN")"
  echo "export SDNET_MODULE=$(shq "$MODULE")"
  echo "COORDINATOR_HOST=\$(scontrol show hostnames \"\$SLURM_JOB_NODELIST\" | sed -n 1p)"
  if [[ -n "$PORT" ]]; then
    echo "COORDINATOR_PORT=$PORT"
  else
    echo "COORDINATOR_PORT=\$((10000 + SLURM_JOB_ID % 50000))"
  fi
  echo "export COORDINATOR_ADDRESS=\"\$COORDINATOR_HOST:\$COORDINATOR_PORT\""
  echo "echo \"job \$SLURM_JOB_ID: \$SLURM_NTASKS process(es) on \$SLURM_JOB_NUM_NODES node(s), coordinator \$COORDINATOR_ADDRESS\""
  echo
  echo "# Per task: \$SLURM_PROCID / \$SLURM_NTASKS are expanded by each task's own shell."
  echo "srun --kill-on-bad-exit=1 bash -c '"
  if [[ $PER_GPU -eq 1 ]]; then
    cat <<'EOS'
  # one GPU per task: the $SLURM_LOCALID-th of the GPUs visible to the tasks of this node
  if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
    IFS=, read -r -a gpus <<< "$CUDA_VISIBLE_DEVICES"
    if [ "${#gpus[@]}" -gt 1 ]; then export CUDA_VISIBLE_DEVICES=${gpus[$SLURM_LOCALID]}; fi
  else
    export CUDA_VISIBLE_DEVICES=$SLURM_LOCALID
  fi
EOS
  fi
  cat <<'EOS'
  exec "$SDNET_PYTHON" -m "$SDNET_MODULE" \
    --coordinator_address=$COORDINATOR_ADDRESS \
    --num_processes=$SLURM_NTASKS \
    --process_id=$SLURM_PROCID \
    "$@"
EOS
  echo "' sdnet-task $TASK_ARGS"
}

if [[ $DRY_RUN -eq 1 ]]; then
  echo "# ---- $SCRIPT_OUT (not written: --dry-run) ----"
  generate
  echo "# ---- end of script ----"
  echo "mkdir -p $(shq "$LOG_DIR")"
  echo "sbatch $(shq "$SCRIPT_OUT")"
  exit 0
fi

command -v sbatch >/dev/null 2>&1 || die "'sbatch' not found: run this on a SLURM login node (or use --dry-run)"
mkdir -p "$LOG_DIR" "$(dirname "$SCRIPT_OUT")"
generate > "$SCRIPT_OUT"
echo "$PROG: wrote $SCRIPT_OUT" >&2
echo "$PROG: sbatch $SCRIPT_OUT" >&2
sbatch "$SCRIPT_OUT"
