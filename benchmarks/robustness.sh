#!/usr/bin/env bash
# The robustness report (python -m sdnet_jax.evaluate) of trained classifier runs, sized for 2 CPU
# cores: gaussian noise at severities 1-5 on 2000 test images, the test-time λ sweep of the stem,
# the adaptive rule, and PGD (l_inf and l_2, 5 steps, 3 epsilons each) on 250 test images.
#
#   benchmarks/robustness.sh WORKDIR [WORKDIR ...] [-- --config.eval.field=value ...]
#
# Each report lands in WORKDIR/robustness/ (robustness.json and PNG plots).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
workdirs=()
while [[ $# -gt 0 && "$1" != "--" ]]; do workdirs+=("$1"); shift; done
[[ $# -gt 0 ]] && shift
[[ ${#workdirs[@]} -gt 0 ]] || { sed -n '2,8p' "$0"; exit 2; }
for workdir in "${workdirs[@]}"; do
  "$PY" -m sdnet_jax.evaluate --workdir="$workdir" \
    --config.eval.corruptions="('gaussian_noise',)" --config.eval.max_examples=2000 \
    --config.eval.pgd_max_examples=250 --config.eval.pgd_steps=5 \
    --config.eval.pgd_linf_epsilons="(0.0, 0.00784313725490196, 0.03137254901960784)" \
    --config.eval.pgd_l2_epsilons="(0.0, 0.5, 1.0)" "$@"
done
