#!/usr/bin/env bash
# Cloud TPU VM, single host or pod slice: [create the VM], put the code on every worker, install
# the package and jax[tpu], run the same command on every worker with --distributed, [delete].
set -euo pipefail

usage() {
  cat <<EOF
Usage: $PROG --name NAME --zone ZONE --workdir gs://BUCKET/PATH
             (--git-url URL [--git-ref REF] | --local-path DIR | --pip-spec SPEC)
             [options] [-- ENTRYPOINT_ARGS...]

Steps (each one a gcloud command; --dry-run prints them all instead):
  1. [--create]  gcloud compute tpus tpu-vm create NAME --zone=ZONE --accelerator-type=TYPE --version=RUNTIME
  2. code, on every worker (--worker=all):
       --git-url URL [--git-ref REF]  clone (or fetch) into ~/REMOTE_DIR and check out REF
       --local-path DIR               tar DIR here (without .git, .venv, caches), scp it to all
                                      workers, unpack into ~/REMOTE_DIR
       --pip-spec SPEC                only 'pip install SPEC' (e.g. git+https://...@REF); the
                                      command then runs in ~ and --config must exist there
  3. install, on every worker: pip install ~/REMOTE_DIR (or SPEC), then pip install -U JAX_SPEC
  4. run, on every worker at once:
       cd ~/REMOTE_DIR && PYTHON -m MODULE --workdir=WORKDIR [--config=PATH] --distributed ENTRYPOINT_ARGS...
     (--distributed: jax.distributed.initialize() finds the pod slice's workers by itself)
  5. [--delete-after]  gcloud compute tpus tpu-vm delete NAME --zone=ZONE --quiet
Project, zone and credentials are yours: nothing is assumed beyond what you pass (gcloud's own
configured defaults apply to whatever you leave out, e.g. the project).

Required:
  --name NAME               TPU VM name
  --zone ZONE               its zone
  --workdir gs://...        passed as --workdir=...; the workers share no disk, so use a bucket
  one of --git-url / --local-path / --pip-spec (not needed with --skip-setup)

Create (optional):
  --create                  create the TPU VM first
  --accelerator-type TYPE   e.g. v4-8, v5litepod-16 (required with --create)
  --version RUNTIME         TPU software version (required with --create; see
                            'gcloud compute tpus tpu-vm versions list --zone=ZONE')
  --spot | --preemptible    create a spot / preemptible TPU VM

Options:
  --project PROJECT         passed to every gcloud command as --project=PROJECT
  --module MOD              entrypoint module (default: sdnet_jax.main; e.g. sdnet_jax.evaluate)
  --config PATH             shorthand for --config=PATH (relative to REMOTE_DIR); sdnet_jax.main
                            needs a config, given here or as --config=... after '--'
  --git-ref REF             branch, tag or commit to check out (default: the remote's HEAD)
  --remote-dir DIR          code directory on the workers, relative to ~ (default: sdnet_jax)
  --python PY               interpreter on the workers (default: python3; the package needs
                            Python >= 3.11: if the runtime image's python3 is older, install one
                            with --setup-cmd and pass it here, or use --venv)
  --venv DIR                create (if missing) and use a virtualenv DIR on the workers (from PY)
  --jax-spec SPEC           what to pip install for TPU (default: jax[tpu]; e.g. 'jax[tpu]==0.10.2')
  --setup-cmd CMD           shell line run on every worker before installing, repeatable
  --env KEY=VALUE           environment variable for the run on every worker, repeatable
  --skip-setup              skip steps 2-3 (code and install already there)
  --detach                  start the run in the background (nohup, log in ~/NAME-run.log on each
                            worker) and return; not with --delete-after
  --delete-after            delete the TPU VM when the run ends (success or failure)
  --dry-run                 print every command instead of running it
  -h, --help                this help

Note: ssh to all workers needs your gcloud key in the agent: ssh-add ~/.ssh/google_compute_engine

Examples:
  $PROG --name NAME --zone ZONE --create --accelerator-type v4-32 --version RUNTIME \\
      --git-url https://github.com/OWNER/sdnet_jax.git --git-ref main \\
      --workdir gs://BUCKET/runs/imagenet_sdnet18 --delete-after -- --config=configs/imagenet_sdnet18.py
  $PROG --name NAME --zone ZONE --local-path . --workdir gs://BUCKET/runs/x \\
      --module sdnet_jax.evaluate
EOF
}

_self=${BASH_SOURCE[0]}  # follow symlinks to this file's real directory, which has _common.sh
while [[ -L $_self ]]; do _to=$(readlink "$_self"); [[ $_to == /* ]] || _to=$(dirname "$_self")/$_to; _self=$_to; done
# shellcheck source-path=SCRIPTDIR source=_common.sh
source "$(dirname "$_self")/_common.sh" || exit 2  # PROG, REPO_ROOT, die, shq, common_opt, ...

# (WORKDIR MODULE CONFIG DRY_RUN ENTRY_ARGS: set in _common.sh; PYTHON_BIN: here the workers' python3)
NAME="" ZONE="" PROJECT="" CREATE=0 ACCEL="" VERSION="" SPOT=0 PREEMPTIBLE=0
GIT_URL="" GIT_REF="" LOCAL_PATH="" PIP_SPEC="" REMOTE_DIR="sdnet_jax" PYTHON_BIN="python3"
VENV="" JAX_SPEC="jax[tpu]" SKIP_SETUP=0 DETACH=0 DELETE_AFTER=0
SETUP_CMDS=() ENVS=()

while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) need_value "$@"; NAME=$2; shift 2 ;;
    --name=*) NAME=${1#*=}; shift ;;
    --zone) need_value "$@"; ZONE=$2; shift 2 ;;
    --zone=*) ZONE=${1#*=}; shift ;;
    --project) need_value "$@"; PROJECT=$2; shift 2 ;;
    --project=*) PROJECT=${1#*=}; shift ;;
    --create) CREATE=1; shift ;;
    --accelerator-type) need_value "$@"; ACCEL=$2; shift 2 ;;
    --accelerator-type=*) ACCEL=${1#*=}; shift ;;
    --version) need_value "$@"; VERSION=$2; shift 2 ;;
    --version=*) VERSION=${1#*=}; shift ;;
    --spot) SPOT=1; shift ;;
    --preemptible) PREEMPTIBLE=1; shift ;;
    --git-url) need_value "$@"; GIT_URL=$2; shift 2 ;;
    --git-url=*) GIT_URL=${1#*=}; shift ;;
    --git-ref) need_value "$@"; GIT_REF=$2; shift 2 ;;
    --git-ref=*) GIT_REF=${1#*=}; shift ;;
    --local-path) need_value "$@"; LOCAL_PATH=$2; shift 2 ;;
    --local-path=*) LOCAL_PATH=${1#*=}; shift ;;
    --pip-spec) need_value "$@"; PIP_SPEC=$2; shift 2 ;;
    --pip-spec=*) PIP_SPEC=${1#*=}; shift ;;
    --remote-dir) need_value "$@"; REMOTE_DIR=$2; shift 2 ;;
    --remote-dir=*) REMOTE_DIR=${1#*=}; shift ;;
    --venv) need_value "$@"; VENV=$2; shift 2 ;;
    --venv=*) VENV=${1#*=}; shift ;;
    --jax-spec) need_value "$@"; JAX_SPEC=$2; shift 2 ;;
    --jax-spec=*) JAX_SPEC=${1#*=}; shift ;;
    --setup-cmd) need_value "$@"; SETUP_CMDS+=("$2"); shift 2 ;;
    --setup-cmd=*) SETUP_CMDS+=("${1#*=}"); shift ;;
    --env) need_value "$@"; ENVS+=("$2"); shift 2 ;;
    --env=*) ENVS+=("${1#*=}"); shift ;;
    --skip-setup) SKIP_SETUP=1; shift ;;
    --detach) DETACH=1; shift ;;
    --delete-after) DELETE_AFTER=1; shift ;;
    *) common_opt "$@"; shift "$OPT_SHIFT" ;;  # --workdir --module --config --python --dry-run --help --
  esac
done

[[ -n "$NAME" ]] || die "missing required argument --name"
[[ -n "$ZONE" ]] || die "missing required argument --zone"
[[ -n "$WORKDIR" ]] || die "missing required argument --workdir"
if [[ $CREATE -eq 1 ]]; then
  [[ -n "$ACCEL" ]] || die "missing required argument --accelerator-type (needed by --create)"
  [[ -n "$VERSION" ]] || die "missing required argument --version (needed by --create)"
fi
[[ $SPOT -eq 1 && $PREEMPTIBLE -eq 1 ]] && die "--spot and --preemptible exclude each other"
n_src=0
[[ -n "$GIT_URL" ]] && n_src=$((n_src + 1))
[[ -n "$LOCAL_PATH" ]] && n_src=$((n_src + 1))
[[ -n "$PIP_SPEC" ]] && n_src=$((n_src + 1))
if [[ $SKIP_SETUP -eq 0 && $n_src -eq 0 ]]; then
  die "missing required argument: one of --git-url, --local-path, --pip-spec (or --skip-setup)"
fi
[[ $n_src -le 1 ]] || die "give only one of --git-url, --local-path, --pip-spec"
[[ -z "$GIT_REF" || -n "$GIT_URL" ]] || die "--git-ref needs --git-url"
[[ -z "$LOCAL_PATH" || -d "$LOCAL_PATH" ]] || die "--local-path '$LOCAL_PATH' is not a directory"
[[ $DETACH -eq 1 && $DELETE_AFTER -eq 1 ]] && die "--detach and --delete-after exclude each other"
check_module
for kv in ${ENVS[@]+"${ENVS[@]}"}; do
  [[ "$kv" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "--env wants KEY=VALUE, got '$kv'"
done
check_config
if [[ "$WORKDIR" != gs://* ]]; then
  echo "$PROG: warning: --workdir '$WORKDIR' is not a gs:// path; on a pod slice every worker would write its own local copy" >&2
fi

# a path relative to the remote home: ~/x and x both mean $HOME/x; absolute paths stay
remote_path() {
  local p=${1#\~/}
  # shellcheck disable=SC2016  # $HOME is for the worker's shell
  case "$p" in /*) shq "$p" ;; *) printf '"$HOME"/%s' "$(shq "$p")" ;; esac
}

GCLOUD_COMMON=("--zone=$ZONE")
[[ -n "$PROJECT" ]] && GCLOUD_COMMON+=("--project=$PROJECT")

run() {  # print (dry run) or run one local command
  if [[ $DRY_RUN -eq 1 ]]; then
    shjoin "$@"; echo
  else
    echo "+ $(shjoin "$@")" >&2
    "$@"
  fi
}
on_all_workers() {  # run one shell command line on every worker
  run gcloud compute tpus tpu-vm ssh "$NAME" "${GCLOUD_COMMON[@]}" --worker=all --command="$1"
}

RDIR=$(remote_path "$REMOTE_DIR")
if [[ -n "$VENV" ]]; then
  VDIR=$(remote_path "$VENV")
  PY="$VDIR/bin/python"
else
  PY=$(shq "$PYTHON_BIN")
fi

# ---- 1. create
if [[ $CREATE -eq 1 ]]; then
  create=(gcloud compute tpus tpu-vm create "$NAME" "${GCLOUD_COMMON[@]}"
          "--accelerator-type=$ACCEL" "--version=$VERSION")
  [[ $SPOT -eq 1 ]] && create+=(--spot)
  [[ $PREEMPTIBLE -eq 1 ]] && create+=(--preemptible)
  run "${create[@]}"
fi

delete_vm() {
  run gcloud compute tpus tpu-vm delete "$NAME" "${GCLOUD_COMMON[@]}" --quiet
}
if [[ $DELETE_AFTER -eq 1 && $DRY_RUN -eq 0 ]]; then
  trap 'echo "$PROG: interrupted; the TPU VM is NOT deleted: gcloud compute tpus tpu-vm delete $NAME ${GCLOUD_COMMON[*]} --quiet" >&2; exit 130' INT TERM
fi

steps() {
  # ---- 2. code
  if [[ $SKIP_SETUP -eq 0 ]]; then
    local setup="set -e"
    for c in ${SETUP_CMDS[@]+"${SETUP_CMDS[@]}"}; do setup+="; $c"; done
    if [[ -n "$GIT_URL" ]]; then
      local ref=HEAD
      [[ -n "$GIT_REF" ]] && ref=$GIT_REF
      setup+="; if [ -d $RDIR/.git ]; then git -C $RDIR remote set-url origin $(shq "$GIT_URL"); else git clone $(shq "$GIT_URL") $RDIR; fi"
      setup+="; git -C $RDIR fetch --quiet origin $(shq "$ref") && git -C $RDIR checkout --quiet --detach FETCH_HEAD"
      setup+="; git -C $RDIR log -1 --format='checked out %H %s'"
    elif [[ -n "$LOCAL_PATH" ]]; then
      local tarball="${TMPDIR:-/tmp}/$NAME-src.$$.tar.gz"
      run tar -czf "$tarball" --exclude=.git --exclude=.venv --exclude=__pycache__ \
        --exclude='*.egg-info' --exclude=.pytest_cache --exclude=.ruff_cache -C "$LOCAL_PATH" . || return
      run gcloud compute tpus tpu-vm scp "$tarball" "$NAME:$NAME-src.tar.gz" "${GCLOUD_COMMON[@]}" --worker=all
      local scp_rc=$?
      [[ $DRY_RUN -eq 0 ]] && rm -f "$tarball"
      [[ $scp_rc -eq 0 ]] || return $scp_rc
      setup+="; mkdir -p $RDIR && tar -xzf \"\$HOME\"/$(shq "$NAME-src.tar.gz") -C $RDIR && rm -f \"\$HOME\"/$(shq "$NAME-src.tar.gz")"
    fi
    # ---- 3. install
    if [[ -n "$VENV" ]]; then
      setup+="; [ -x $PY ] || $(shq "$PYTHON_BIN") -m venv $VDIR"
    fi
    setup+="; $PY -c 'import sys; assert sys.version_info >= (3, 11), \"Python >= 3.11 needed, \" + sys.version'"
    setup+="; $PY -m pip install --upgrade pip"
    if [[ -n "$PIP_SPEC" ]]; then
      setup+="; $PY -m pip install $(shq "$PIP_SPEC")"
    else
      setup+="; $PY -m pip install $RDIR"
    fi
    setup+="; $PY -m pip install --upgrade $(shq "$JAX_SPEC")"
    # (version only: touching the TPU here would start the pod's runtime outside the real run)
    setup+="; $PY -c 'import jax, jaxlib; print(\"jax\", jax.__version__, \"jaxlib\", jaxlib.__version__)'"
    on_all_workers "$setup" || return
  fi

  # ---- 4. run
  local cmd="cd"
  [[ -z "$PIP_SPEC" ]] && cmd+=" $RDIR"
  cmd+=" && "
  for kv in ${ENVS[@]+"${ENVS[@]}"}; do cmd+="${kv%%=*}=$(shq "${kv#*=}") "; done
  cmd+="$PY -m $MODULE --workdir=$(shq "$WORKDIR")"
  [[ -n "$CONFIG" ]] && cmd+=" --config=$(shq "$CONFIG")"
  cmd+=" --distributed"
  for a in ${ENTRY_ARGS[@]+"${ENTRY_ARGS[@]}"}; do cmd+=" $(shq "$a")"; done
  if [[ $DETACH -eq 1 ]]; then
    local log
    log="\"\$HOME\"/$(shq "$NAME-run.log")"
    cmd="nohup bash -c $(shq "$cmd") > $log 2>&1 < /dev/null & echo \"started on \$(hostname), log: $log\""
  fi
  on_all_workers "$cmd"
}

set +e
steps
rc=$?
set -e

# ---- 5. delete
if [[ $DELETE_AFTER -eq 1 ]]; then
  trap - INT TERM
  [[ $rc -ne 0 ]] && echo "$PROG: the run failed (status $rc); deleting the TPU VM anyway (--delete-after)" >&2
  delete_vm || rc=$?
fi
exit "$rc"
