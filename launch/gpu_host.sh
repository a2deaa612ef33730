#!/usr/bin/env bash
# One host with all its GPUs: one JAX process that sees every local GPU.
set -euo pipefail

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

_self=${BASH_SOURCE[0]}  # follow symlinks to this file's real directory, which has _common.sh
while [[ -L $_self ]]; do _to=$(readlink "$_self"); [[ $_to == /* ]] || _to=$(dirname "$_self")/$_to; _self=$_to; done
# shellcheck source-path=SCRIPTDIR source=_common.sh
source "$(dirname "$_self")/_common.sh" || exit 2  # PROG, REPO_ROOT, die, shq, common_opt, ...

# (WORKDIR MODULE CONFIG PYTHON_BIN DRY_RUN ENTRY_ARGS: set in _common.sh)
GPUS="" LOG_FILE=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --gpus) need_value "$@"; GPUS=$2; shift 2 ;;
    --gpus=*) GPUS=${1#*=}; shift ;;
    --log-file) need_value "$@"; LOG_FILE=$2; shift 2 ;;
    --log-file=*) LOG_FILE=${1#*=}; shift ;;
    *) common_opt "$@"; shift "$OPT_SHIFT" ;;  # --workdir --module --config --python --dry-run --help --
  esac
done

[[ -n "$WORKDIR" ]] || die "missing required argument --workdir"
check_module
check_config

default_python

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
