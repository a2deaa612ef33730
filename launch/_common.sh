# shellcheck shell=bash
# Shared by the launch scripts; sourced (never run) after their usage(), from the script's own
# directory:
#   _self=${BASH_SOURCE[0]}; while [[ -L $_self ]]; do ...; done   # follow symlinks to launch/
#   source "$(dirname "$_self")/_common.sh" || exit 2
# It sets PROG and REPO_ROOT, the options every script takes (with their defaults), and defines
# die / need_value / shq / shjoin, common_opt (the shared arms of the option parser),
# check_module / check_config (entrypoint checks) and default_python.
# (The variables are read by the sourcing script, not here.)
# shellcheck disable=SC2034

PROG=$(basename "$0")
# <repo> as seen from the path the script was called by (../ of its directory)
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[1]}")/.." && pwd)

# options every script takes; a script sets its own default for PYTHON_BIN after sourcing
WORKDIR="" MODULE="sdnet_jax.main" CONFIG="" PYTHON_BIN="" DRY_RUN=0
ENTRY_ARGS=()

die() { echo "$PROG: error: $*" >&2; echo "Run '$PROG --help' for usage." >&2; exit 2; }
need_value() { [[ $# -ge 2 && -n "$2" ]] || die "argument $1 needs a value"; }
# quote one word for a POSIX shell (as-is when it is plainly safe, else in single quotes)
shq() { if [[ $1 =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then printf '%s' "$1"; else printf "'%s'" "${1//\'/\'\\\'\'}"; fi; }
shjoin() { local a sep=""; for a in "$@"; do printf '%s%s' "$sep" "$(shq "$a")"; sep=" "; done; }

# The options all scripts share, and the end of the options ('--', or an unknown one): the last
# arm of each script's parser, '*) common_opt "$@"; shift "$OPT_SHIFT" ;;'. Calls the script's
# usage() for --help.
common_opt() {
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --workdir) need_value "$@"; WORKDIR=$2; OPT_SHIFT=2 ;;
    --workdir=*) WORKDIR=${1#*=}; OPT_SHIFT=1 ;;
    --module) need_value "$@"; MODULE=$2; OPT_SHIFT=2 ;;
    --module=*) MODULE=${1#*=}; OPT_SHIFT=1 ;;
    --config) need_value "$@"; CONFIG=$2; OPT_SHIFT=2 ;;
    --config=*) CONFIG=${1#*=}; OPT_SHIFT=1 ;;
    --python) need_value "$@"; PYTHON_BIN=$2; OPT_SHIFT=2 ;;
    --python=*) PYTHON_BIN=${1#*=}; OPT_SHIFT=1 ;;
    --dry-run) DRY_RUN=1; OPT_SHIFT=1 ;;
    --) shift; ENTRY_ARGS=("$@"); OPT_SHIFT=$(($# + 1)) ;;  # the rest goes to the entrypoint
    *) die "unknown argument '$1' (entrypoint arguments go after '--')" ;;
  esac
}

check_module() {
  [[ "$MODULE" =~ ^[A-Za-z_][A-Za-z0-9_.]*$ ]] || die "--module must be a Python module name, got '$MODULE'"
}

# sdnet_jax.main needs a config: --config PATH, or --config[=PATH] after '--'
check_config() {
  local a has_config=0
  [[ -n "$CONFIG" ]] && has_config=1
  for a in ${ENTRY_ARGS[@]+"${ENTRY_ARGS[@]}"}; do
    [[ "$a" == --config=* || "$a" == --config ]] && has_config=1
  done
  if [[ "$MODULE" == "sdnet_jax.main" && $has_config -eq 0 ]]; then
    die "missing required argument --config (give --config PATH, or --config=PATH after '--')"
  fi
}

# the local interpreter: --python, else $PYTHON, else <repo>/.venv/bin/python, else python3
default_python() {
  if [[ -z "$PYTHON_BIN" ]]; then
    if [[ -n "${PYTHON:-}" ]]; then PYTHON_BIN=$PYTHON
    elif [[ -x "$REPO_ROOT/.venv/bin/python" ]]; then PYTHON_BIN="$REPO_ROOT/.venv/bin/python"
    else PYTHON_BIN=python3
    fi
  fi
}
