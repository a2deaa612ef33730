"""Pure functional convolutional-sparse-coding ops (jax/numpy only).

Dictionaries (``x ≈ A z``):
  conv_analysis, conv_synthesis, conv_pair, code_hw, conv_padding,
  dense_analysis, dense_synthesis, dense_pair, normalize_atoms, adjoint
Circular dictionaries (FFT or direct):
  circular_conv_pair, circular_conv_normal_solver, circular_conv_lipschitz, kernel_spectrum
Proximal maps:
  soft_threshold, nonneg_soft_threshold, elastic_net_prox
Spectral norm:
  power_iteration
Lasso:
  solve_lasso (one solver; observe= records every iterate), and it with method bound: ista, fista,
  sdnet, fista_restart, admm; lasso_objective, optimality_gap, momentum_coefficients
Types:
  LinearOp, NormalSolver, UNROLL_LIMIT
Rate reduction (MCR², CTRL):
  coding_rate, class_coding_rate, rate_reduction, pairwise_rate_reduction, ctrl_terms, sample_distance,
  ctrl_multiclass_objective, ctrl_unsupervised_objective, SAMPLE_DISTANCES (the binary CTRL
  objective is pairwise_rate_reduction)
"""

from sdnet_jax.ops.dictionary import (
    code_hw,
    conv_analysis,
    conv_padding,
    conv_pair,
    conv_synthesis,
    dense_analysis,
    dense_pair,
    dense_synthesis,
    normalize_atoms,
)
from sdnet_jax.ops.fft import (
    circular_conv_lipschitz,
    circular_conv_normal_solver,
    circular_conv_pair,
    kernel_spectrum,
)
from sdnet_jax.ops.lasso import (
    GRAD_MODES,
    METHODS,
    SPLITTING_METHODS,
    admm,
    fista,
    fista_restart,
    ista,
    lasso_objective,
    momentum_coefficients,
    optimality_gap,
    sdnet,
    solve_lasso,
)
from sdnet_jax.ops.prox import elastic_net_prox, nonneg_soft_threshold, soft_threshold
from sdnet_jax.ops.rates import (
    SAMPLE_DISTANCES,
    class_coding_rate,
    coding_rate,
    ctrl_multiclass_objective,
    ctrl_terms,
    ctrl_unsupervised_objective,
    pairwise_rate_reduction,
    rate_reduction,
    sample_distance,
)
from sdnet_jax.ops.spectral import adjoint, power_iteration
from sdnet_jax.ops.types import UNROLL_LIMIT, LinearOp, NormalSolver

__all__ = [
    "GRAD_MODES",
    "METHODS",
    "SAMPLE_DISTANCES",
    "SPLITTING_METHODS",
    "UNROLL_LIMIT",
    "LinearOp",
    "NormalSolver",
    "adjoint",
    "admm",
    "circular_conv_lipschitz",
    "circular_conv_normal_solver",
    "circular_conv_pair",
    "class_coding_rate",
    "code_hw",
    "coding_rate",
    "conv_analysis",
    "conv_padding",
    "conv_pair",
    "conv_synthesis",
    "ctrl_multiclass_objective",
    "ctrl_terms",
    "ctrl_unsupervised_objective",
    "dense_analysis",
    "dense_pair",
    "dense_synthesis",
    "elastic_net_prox",
    "fista",
    "fista_restart",
    "ista",
    "kernel_spectrum",
    "lasso_objective",
    "momentum_coefficients",
    "nonneg_soft_threshold",
    "normalize_atoms",
    "optimality_gap",
    "pairwise_rate_reduction",
    "power_iteration",
    "rate_reduction",
    "sample_distance",
    "sdnet",
    "soft_threshold",
    "solve_lasso",
]
