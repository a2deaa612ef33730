#!/usr/bin/env bash
# Runs `python -m benchmarks.reproduce` on a host without internet that has jax for its
# accelerator: installs this project from BUNDLE (launch/gpu_bundle.sh) into that Python, then runs
# the suite on BUNDLE's Fashion-MNIST. Writes to OUT: report.json, report.md, reproduce.log,
# install.log and host_freeze.txt (the host's `pip freeze`, to leave out exactly what it has next
# time). Run from the repository root:
#
#   launch/reproduce_offline.sh BUNDLE OUT [more benchmarks.reproduce flags, e.g. --budget_s=480]
# Environment: PYTHON (default python3), WORKDIR_ROOT (the runs' workdirs, /tmp/reproduce_runs).
set -uo pipefail
bundle=$1 out=$2
shift 2
python=${PYTHON:-python3}
mkdir -p "$out"
"$python" -m pip freeze > "$out/host_freeze.txt" 2>&1
if ! "$python" -m pip install --no-index --find-links "$bundle/wheelhouse" . > "$out/install.log" 2>&1; then
  # a host package at a version our requirements refuse, with no wheel for it in the bundle:
  # install ours without resolving (the host keeps its versions) rather than not run at all
  echo "reproduce_offline: resolving install failed (install.log); installing without dependencies"
  "$python" -m pip install --no-index --no-deps --find-links "$bundle/wheelhouse" \
    "$bundle"/wheelhouse/*.whl . >> "$out/install.log" 2>&1 \
    || { tail -n 20 "$out/install.log"; exit 1; }
fi
PYTHONUNBUFFERED=1 "$python" -m benchmarks.reproduce --out="$out" --data_dir="$bundle/data" \
  --workdir_root="${WORKDIR_ROOT:-/tmp/reproduce_runs}" "$@" 2>&1 | tee "$out/reproduce.log"
