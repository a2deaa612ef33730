#!/usr/bin/env bash
# Trains the given configs one after the other on this machine (Fashion-MNIST prepared first when
# needed), records each run's wall time, then prints a summary table (benchmarks/summarize.py).
#
#   benchmarks/train_configs.sh CONFIG [CONFIG ...] [-- --config.field=value ...]
#
# CONFIG is a file name under configs/ without .py (e.g. fashion_mnist_sdnet18); flags after `--`
# go to every run. Environment: DATA_DIR (TFDS data_dir, default ~/tensorflow_datasets),
# MANUAL_DIR (Debian's dataset-fashion-mnist files, default /usr/share/datasets/fashion-mnist),
# OUT (parent of the workdirs, default workdir/benchmarks), PYTHON (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_DIR=${DATA_DIR:-$HOME/tensorflow_datasets}
MANUAL_DIR=${MANUAL_DIR:-/usr/share/datasets/fashion-mnist}
OUT=${OUT:-workdir/benchmarks}
PY=${PYTHON:-.venv/bin/python}
configs=()
while [[ $# -gt 0 && "$1" != "--" ]]; do configs+=("$1"); shift; done
[[ $# -gt 0 ]] && shift
[[ ${#configs[@]} -gt 0 ]] || { sed -n '2,10p' "$0"; exit 2; }

if [[ ! -d "$DATA_DIR/fashion_mnist" ]]; then
  [[ -d "$MANUAL_DIR" ]] || { echo "no $MANUAL_DIR: apt-get install dataset-fashion-mnist" >&2; exit 2; }
  "$PY" -m sdnet_jax.data.prepare fashion_mnist --manual_dir="$MANUAL_DIR" --data_dir="$DATA_DIR"
fi
workdirs=()
for name in "${configs[@]}"; do
  start=$(date +%s)
  "$PY" -m sdnet_jax.main --config="configs/$name.py" --workdir="$OUT/$name" \
    --config.data.data_dir="$DATA_DIR" "$@"
  echo "{\"wall_seconds\": $(( $(date +%s) - start ))}" > "$OUT/$name/wall_time.json"
  workdirs+=("$OUT/$name")
done
"$PY" -m benchmarks.summarize "${workdirs[@]}"
