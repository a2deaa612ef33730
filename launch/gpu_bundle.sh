#!/usr/bin/env bash
# Prepares BUNDLE (default gpu_bundle/, git-ignored) for `launch/reproduce_offline.sh` on a GPU host
# without internet: BUNDLE/wheelhouse (what the host lacks of this project's dependencies, for its
# Python) and BUNDLE/data/fashion_mnist/arrays (Fashion-MNIST decoded, 30 MB). Fails when the
# whole is over the 64 MiB a device call may carry.
#
#   launch/gpu_bundle.sh [BUNDLE]
# Environment: PY (the project's python, default .venv/bin/python), HOST_PYTHON (3.12),
# HOST_PACKAGES (a pip freeze of the host, default launch/gpu_host_packages.txt), FASHION_MNIST_DIR
# (Debian's dataset-fashion-mnist, /usr/share/datasets/fashion-mnist), LIMIT_MIB (64).
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=${1:-gpu_bundle}
py=${PY:-.venv/bin/python}
"$py" launch/wheelhouse.py --out "$bundle/wheelhouse" --python-version "${HOST_PYTHON:-3.12}" \
  --exclude-freeze "${HOST_PACKAGES:-launch/gpu_host_packages.txt}"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
"$py" -m sdnet_jax.data.prepare fashion_mnist --format=arrays \
  --manual_dir="${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}" --data_dir="$scratch"
rm -rf "$bundle/data" && mkdir -p "$bundle/data/fashion_mnist"
mv "$scratch/fashion_mnist/arrays" "$bundle/data/fashion_mnist/arrays"
size=$(du -sm "$bundle" | cut -f1)
echo "$bundle: ${size} MiB (wheelhouse $(du -sm "$bundle/wheelhouse" | cut -f1), data $(du -sm "$bundle/data" | cut -f1))"
if [ "$size" -gt "${LIMIT_MIB:-64}" ]; then
  echo "$bundle is over ${LIMIT_MIB:-64} MiB: leave out more (HOST_PACKAGES) or carry less" >&2
  exit 1
fi
