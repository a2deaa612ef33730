#!/usr/bin/env bash
# One host with all its GPUs: one JAX process that sees every local GPU.
set -euo pipefail

PROG=$(basename "$0")
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() {
  cat <<EOF
Usage: $PROG --workdir DIR [options] [-- ENTRYPOINT_ARGS...]

Runs one process, 'python -m MODULE --workdir=DIR [--config=PATH] ENTRYPOINT_ARGS...', on this
host. JAX uses every GPU it can see: all of them, or those in CUDA_VISIBLE_DEVICES, which is
passed through unchanged unless --gpus sets it. No multi-host flags are added (single process).

Install (once, in the environment that runs the job; Python >= 3.11):
  pip install -e <repo>                 # or: pip install git+<repo url>@<ref>
  pip install -U "jax[cuda12]"          # CUDA 12 wheels incl. cuDNN/NCCL; needs an NVIDIA driver >= 525
  python -c "import jax; print(jax.devices())"   # should list CudaDevice(id=0), ...

Required:
  --workdir DIR        passed to the entrypoint as --workdir=DIR (local path or gs://...)

Options:
  --module MOD         entrypoint module (default: sdnet_jax.main; e.g. sdnet_jax.evaluate)
  --config PATH        shorthand for the entrypoint flag --config=PATH; sdnet_jax.main needs a
                       config, given here or as --config=... after '--'
  --gpus LIST          set CUDA_VISIBLE_DEVICES=LIST (e.g. 0,1); default: inherit the caller's
  --python PY          interpreter (default: \$PYTHON, else <repo>/.venv/bin/python, else python3)
  --log-file FILE      also copy stdout+stderr to FILE (tee)
  --dry-run            print the command (with its env) instead of running it
  -h, --help           this help

Examples:
  $PROG --workdir /data/runs/sdnet18 -- --config=configs/cifar10_sdnet18.py
  CUDA_VISIBLE_DEVICES=0,1 $PROG --workdir gs://BUCKET/runs/sdnet18 --module sdnet_jax.evaluate
EOF
}

die() { echo "$PROG: error: $*" >&2; echo "Run '$PROG --help' for usage." >&2; exit 2; }
need_value() { [[ $# -ge 2 && -n "$2" ]] || die "argument $1 needs a value"; }
# quote one word for a POSIX shell (as-is when it is plainly safe, else in single quotes)
shq() { if [[ $1 =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then printf '%s' "$1"; else printf "'%s'" "${1//\'/\'\\\'\'}"; fi; }
shjoin() { local a sep=""; for a in "$@"; do printf '%s%s' "$sep" "$(shq "$a")"; sep=" "; done; }

WORKDIR="" MODULE="sdnet_jax.main" CONFIG="" GPUS="" PYTHON_BIN="" LOG_FILE="" DRY_RUN=0
ENTRY_ARGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --workdir) need_value "$@"; WORKDIR=$2; shift 2 ;;
    --workdir=*) WORKDIR=${1#*=}; shift ;;
    --module) need_value "$@"; MODULE=$2; shift 2 ;;
    --module=*) MODULE=${1#*=}; shift ;;
    --config) need_value "$@"; CONFIG=$2; shift 2 ;;
    --config=*) CONFIG=${1#*=}; shift ;;
    --gpus) need_value "$@"; GPUS=$2; shift 2 ;;
    --gpus=*) GPUS=${1#*=}; shift ;;
    --python) need_value "$@"; PYTHON_BIN=$2; shift 2 ;;
    --python=*) PYTHON_BIN=${1#*=}; shift ;;
    --log-file) need_value "$@"; LOG_FILE=$2; shift 2 ;;
    --log-file=*) LOG_FILE=${1#*=}; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    --) shift; ENTRY_ARGS=("$@"); break ;;
    *) die "unknown argument '$1' (entrypoint arguments go after '--')" ;;
  esac
done

[[ -n "$WORKDIR" ]] || die "missing required argument --workdir"
[[ "$MODULE" =~ ^[A-Za-z_][A-Za-z0-9_.]*$ ]] || die "--module must be a Python module name, got '$MODULE'"
has_config=0
[[ -n "$CONFIG" ]] && has_config=1
for a in ${ENTRY_ARGS[@]+"${ENTRY_ARGS[@]}"}; do
  [[ "$a" == --config=* || "$a" == --config ]] && has_config=1
done
if [[ "$MODULE" == "sdnet_jax.main" && $has_config -eq 0 ]]; then
  die "missing required argument --config (give --config PATH, or --config=PATH after '--')"
fi

if [[ -z "$PYTHON_BIN" ]]; then
  if [[ -n "${PYTHON:-}" ]]; then PYTHON_BIN=$PYTHON
  elif [[ -x "$REPO_ROOT/.venv/bin/python" ]]; then PYTHON_BIN="$REPO_ROOT/.venv/bin/python"
  else PYTHON_BIN=python3
  fi
fi

CMD=("$PYTHON_BIN" -m "$MODULE" "--workdir=$WORKDIR")
[[ -n "$CONFIG" ]] && CMD+=("--config=$CONFIG")
CMD+=(${ENTRY_ARGS[@]+"${ENTRY_ARGS[@]}"})

if [[ -n "$GPUS" ]]; then
  export CUDA_VISIBLE_DEVICES=$GPUS
fi

if [[ $DRY_RUN -eq 1 ]]; then
  prefix=""
  if [[ -n "${CUDA_VISIBLE_DEVICES+x}" ]]; then
    prefix="CUDA_VISIBLE_DEVICES=$(shq "$CUDA_VISIBLE_DEVICES") "
  fi
  printf '%s' "$prefix"
  shjoin "${CMD[@]}"
  if [[ -n "$LOG_FILE" ]]; then printf ' 2>&1 | tee %s' "$(shq "$LOG_FILE")"; fi
  echo
  exit 0
fi

echo "$PROG: CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-<unset: all GPUs>}" >&2
if [[ -n "$LOG_FILE" ]]; then
  mkdir -p "$(dirname "$LOG_FILE")"
  set +e
  "${CMD[@]}" 2>&1 | tee "$LOG_FILE"
  rc=${PIPESTATUS[0]}
  exit "$rc"
fi
exec "${CMD[@]}"
