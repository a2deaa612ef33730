#!/usr/bin/env bash
# Run N JAX processes on this machine, on CPU, through the same multi-process code path as a
# TPU pod slice or a GPU cluster (jax.distributed.initialize + cross-process collectives).
set -uo pipefail

usage() {
  cat <<EOF
Usage: $PROG --num-processes N --workdir DIR [options] [-- ENTRYPOINT_ARGS...]

Starts N processes of 'python -m MODULE' on this machine with JAX on CPU. Process i gets
  --workdir=DIR --coordinator_address=127.0.0.1:PORT --num_processes=N --process_id=i
followed by ENTRYPOINT_ARGS (everything after '--', passed through unchanged), and the env
  JAX_PLATFORMS=cpu  JAX_CPU_COLLECTIVES_IMPLEMENTATION=gloo
  [XLA_FLAGS="\$XLA_FLAGS --xla_force_host_platform_device_count=K"]   (--devices-per-process K)
  PYTHONPATH=<repo root>:\$PYTHONPATH
Each process writes stdout+stderr to LOG_DIR/process_<i>.log. The script waits for all of them,
and as soon as one fails it stops the others (SIGTERM, then SIGKILL) and exits with that
process's status, after printing the tail of its log.

Required:
  --num-processes N        number of processes (>= 1)
  --workdir DIR            passed to the entrypoint as --workdir=DIR (local path or gs://...)

Options:
  --module MOD             entrypoint module (default: sdnet_jax.main; e.g. sdnet_jax.evaluate)
  --config PATH            shorthand for the entrypoint flag --config=PATH; sdnet_jax.main needs
                           a config, given here or as --config=... after '--'
  --devices-per-process K  K CPU devices per process (XLA_FLAGS=--xla_force_host_platform_device_count=K)
  --port PORT              coordinator port on 127.0.0.1 (default: a free port)
  --log-dir DIR            per-process logs (default: WORKDIR/logs; required when WORKDIR is gs://...)
  --python PY              interpreter (default: \$PYTHON, else <repo>/.venv/bin/python, else python3)
  --timeout SECONDS        stop everything and fail after SECONDS (default: 0 = no limit)
  --kill-grace SECONDS     how long stopped processes get between SIGTERM and SIGKILL (default: 5)
  --show-logs              print every process's log when done
  --dry-run                print the commands (with their env) instead of running them
  -h, --help               this help

Examples:
  $PROG --num-processes 2 --workdir /tmp/run -- --config=configs/digits_sdnet.py --config.num_train_steps=5
  $PROG --num-processes 2 --devices-per-process 2 --workdir /tmp/run --module sdnet_jax.evaluate
EOF
}

_self=${BASH_SOURCE[0]}  # follow symlinks to this file's real directory, which has _common.sh
while [[ -L $_self ]]; do _to=$(readlink "$_self"); [[ $_to == /* ]] || _to=$(dirname "$_self")/$_to; _self=$_to; done
# shellcheck source-path=SCRIPTDIR source=_common.sh
source "$(dirname "$_self")/_common.sh" || exit 2  # PROG, REPO_ROOT, die, shq, common_opt, ...

# (WORKDIR MODULE CONFIG PYTHON_BIN DRY_RUN ENTRY_ARGS: set in _common.sh)
NUM_PROCESSES="" DEVICES_PER_PROCESS="" PORT="" LOG_DIR="" TIMEOUT=0 KILL_GRACE=5 SHOW_LOGS=0

while [[ $# -gt 0 ]]; do
  case "$1" in
    --num-processes) need_value "$@"; NUM_PROCESSES=$2; shift 2 ;;
    --num-processes=*) NUM_PROCESSES=${1#*=}; shift ;;
    --devices-per-process) need_value "$@"; DEVICES_PER_PROCESS=$2; shift 2 ;;
    --devices-per-process=*) DEVICES_PER_PROCESS=${1#*=}; shift ;;
    --port) need_value "$@"; PORT=$2; shift 2 ;;
    --port=*) PORT=${1#*=}; shift ;;
    --log-dir) need_value "$@"; LOG_DIR=$2; shift 2 ;;
    --log-dir=*) LOG_DIR=${1#*=}; shift ;;
    --timeout) need_value "$@"; TIMEOUT=$2; shift 2 ;;
    --timeout=*) TIMEOUT=${1#*=}; shift ;;
    --kill-grace) need_value "$@"; KILL_GRACE=$2; shift 2 ;;
    --kill-grace=*) KILL_GRACE=${1#*=}; shift ;;
    --show-logs) SHOW_LOGS=1; shift ;;
    *) common_opt "$@"; shift "$OPT_SHIFT" ;;  # --workdir --module --config --python --dry-run --help --
  esac
done

[[ -n "$NUM_PROCESSES" ]] || die "missing required argument --num-processes"
[[ -n "$WORKDIR" ]] || die "missing required argument --workdir"
[[ "$NUM_PROCESSES" =~ ^[1-9][0-9]*$ ]] || die "--num-processes must be a positive integer, got '$NUM_PROCESSES'"
[[ -z "$DEVICES_PER_PROCESS" || "$DEVICES_PER_PROCESS" =~ ^[1-9][0-9]*$ ]] \
  || die "--devices-per-process must be a positive integer, got '$DEVICES_PER_PROCESS'"
[[ -z "$PORT" || "$PORT" =~ ^[0-9]+$ ]] || die "--port must be a number, got '$PORT'"
[[ "$TIMEOUT" =~ ^[0-9]+$ ]] || die "--timeout must be a whole number of seconds, got '$TIMEOUT'"
[[ "$KILL_GRACE" =~ ^[0-9]+$ ]] || die "--kill-grace must be a whole number of seconds, got '$KILL_GRACE'"
check_module

check_config

if [[ -z "$LOG_DIR" ]]; then
  [[ "$WORKDIR" == *://* ]] && die "--workdir '$WORKDIR' is not a local path: give --log-dir for the per-process logs"
  LOG_DIR="$WORKDIR/logs"
fi

default_python

if [[ -z "$PORT" ]]; then
  PORT=$("$PYTHON_BIN" -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()') \
    || die "could not pick a free port with '$PYTHON_BIN' (give --port)"
fi

XLA_FLAGS_VALUE=${XLA_FLAGS:-}
if [[ -n "$DEVICES_PER_PROCESS" ]]; then
  XLA_FLAGS_VALUE="${XLA_FLAGS_VALUE:+$XLA_FLAGS_VALUE }--xla_force_host_platform_device_count=$DEVICES_PER_PROCESS"
fi
PYTHONPATH_VALUE="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}"

# env + argv of process $1, in CMD (an array)
build_cmd() {
  local i=$1
  CMD=(env JAX_PLATFORMS=cpu JAX_CPU_COLLECTIVES_IMPLEMENTATION=gloo "PYTHONPATH=$PYTHONPATH_VALUE")
  [[ -n "$XLA_FLAGS_VALUE" ]] && CMD+=("XLA_FLAGS=$XLA_FLAGS_VALUE")
  CMD+=("$PYTHON_BIN" -m "$MODULE" "--workdir=$WORKDIR")
  [[ -n "$CONFIG" ]] && CMD+=("--config=$CONFIG")
  CMD+=("--coordinator_address=127.0.0.1:$PORT" "--num_processes=$NUM_PROCESSES" "--process_id=$i")
  CMD+=(${ENTRY_ARGS[@]+"${ENTRY_ARGS[@]}"})
}

if [[ $DRY_RUN -eq 1 ]]; then
  echo "mkdir -p $(shq "$LOG_DIR")"
  for ((i = 0; i < NUM_PROCESSES; i++)); do
    build_cmd "$i"
    shjoin "${CMD[@]}"
    printf ' > %s 2>&1 &\n' "$(shq "$LOG_DIR/process_$i.log")"
  done
  echo "wait  # stop the others and exit non-zero as soon as one process fails"
  exit 0
fi

mkdir -p "$LOG_DIR" || die "cannot create log dir '$LOG_DIR'"

PIDS=()
STATUS=()   # "" while running, exit status once reaped

stop_all() {  # SIGTERM the running ones, SIGKILL what is left after a grace period
  local i pid alive t
  for i in "${!PIDS[@]}"; do
    [[ -z "${STATUS[$i]}" ]] && kill -TERM "${PIDS[$i]}" 2>/dev/null
  done
  # (a JAX process blocked in a cross-process collective was seen to outlive SIGTERM: hence SIGKILL)
  for ((t = 0; t < KILL_GRACE * 10; t++)); do
    alive=0
    for i in "${!PIDS[@]}"; do
      [[ -z "${STATUS[$i]}" ]] && kill -0 "${PIDS[$i]}" 2>/dev/null && alive=1
    done
    [[ $alive -eq 0 ]] && break
    sleep 0.1
  done
  for i in "${!PIDS[@]}"; do
    pid=${PIDS[$i]}
    if [[ -z "${STATUS[$i]}" ]]; then
      kill -KILL "$pid" 2>/dev/null
      wait "$pid" 2>/dev/null
      STATUS[i]=$?
    fi
  done
}

# shellcheck disable=SC2329  # invoked by the trap below
on_signal() {
  echo "$PROG: interrupted, stopping all processes" >&2
  stop_all
  exit 130
}
trap on_signal INT TERM HUP

echo "$PROG: $NUM_PROCESSES process(es) of '$MODULE', coordinator 127.0.0.1:$PORT, logs in $LOG_DIR" >&2
for ((i = 0; i < NUM_PROCESSES; i++)); do
  build_cmd "$i"
  "${CMD[@]}" >"$LOG_DIR/process_$i.log" 2>&1 &
  PIDS[i]=$!
  STATUS[i]=""
done

FAILED=-1 FAILED_RC=0 TIMED_OUT=0 START=$SECONDS
while :; do
  running=0
  for i in "${!PIDS[@]}"; do
    [[ -n "${STATUS[$i]}" ]] && continue
    if kill -0 "${PIDS[$i]}" 2>/dev/null; then
      running=1
    else
      wait "${PIDS[$i]}"
      STATUS[i]=$?
      if [[ ${STATUS[$i]} -ne 0 && $FAILED -lt 0 ]]; then
        FAILED=$i FAILED_RC=${STATUS[$i]}
      fi
    fi
  done
  [[ $running -eq 0 ]] && break
  if [[ $FAILED -ge 0 ]]; then
    echo "$PROG: process $FAILED exited with status $FAILED_RC; stopping the others" >&2
    stop_all
    break
  fi
  if [[ $TIMEOUT -gt 0 && $((SECONDS - START)) -ge $TIMEOUT ]]; then
    echo "$PROG: timeout after ${TIMEOUT}s; stopping all processes" >&2
    TIMED_OUT=1
    stop_all
    break
  fi
  sleep 0.2
done
trap - INT TERM HUP

for i in "${!PIDS[@]}"; do
  echo "$PROG: process $i exit status ${STATUS[$i]} (log: $LOG_DIR/process_$i.log)" >&2
done
if [[ $SHOW_LOGS -eq 1 ]]; then
  for i in "${!PIDS[@]}"; do
    echo "===== process $i: $LOG_DIR/process_$i.log ====="
    cat "$LOG_DIR/process_$i.log"
  done
fi

if [[ $FAILED -ge 0 ]]; then
  echo "$PROG: ---- last lines of $LOG_DIR/process_$FAILED.log ----" >&2
  tail -n 40 "$LOG_DIR/process_$FAILED.log" >&2
  [[ $FAILED_RC -eq 0 ]] && FAILED_RC=1
  exit "$FAILED_RC"
fi
if [[ $TIMED_OUT -eq 1 ]]; then
  exit 124
fi
exit 0
