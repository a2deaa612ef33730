#!/usr/bin/env bash
# SDNet-18 vs ResNet-18 on Fashion-MNIST with the same reduced schedule (configs/fashion_mnist_*.py),
# one run after the other on this machine, then a summary table (benchmarks/summarize.py).
#
#   benchmarks/fashion_mnist.sh [--config.field=value ...]   (extra flags go to both runs)
#
# Environment: DATA_DIR (TFDS data_dir, default ~/tensorflow_datasets), MANUAL_DIR (Debian's
# dataset-fashion-mnist files, default /usr/share/datasets/fashion-mnist), OUT (default
# workdir/fashion_mnist), MODELS (default "resnet18 sdnet18"), PYTHON (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_DIR=${DATA_DIR:-$HOME/tensorflow_datasets}
MANUAL_DIR=${MANUAL_DIR:-/usr/share/datasets/fashion-mnist}
OUT=${OUT:-workdir/fashion_mnist}
MODELS=${MODELS:-resnet18 sdnet18}
PY=${PYTHON:-.venv/bin/python}

if [[ ! -d "$DATA_DIR/fashion_mnist" ]]; then
  [[ -d "$MANUAL_DIR" ]] || { echo "no $MANUAL_DIR: apt-get install dataset-fashion-mnist" >&2; exit 2; }
  "$PY" -m sdnet_jax.data.prepare fashion_mnist --manual_dir="$MANUAL_DIR" --data_dir="$DATA_DIR"
fi
for model in $MODELS; do
  start=$(date +%s)
  "$PY" -m sdnet_jax.main --config="configs/fashion_mnist_${model}.py" --workdir="$OUT/$model" \
    --config.data.data_dir="$DATA_DIR" "$@"
  echo "{\"wall_seconds\": $(( $(date +%s) - start ))}" > "$OUT/$model/wall_time.json"
done
# shellcheck disable=SC2086
"$PY" -m benchmarks.summarize $OUT/*/
