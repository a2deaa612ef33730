"""Evaluation of trained models.

* :mod:`sdnet_jax.evaluation.robustness` — classifiers under corruptions, test-time λ sweeps, the
  adaptive λ rule and PGD attacks (the ``python -m sdnet_jax.evaluate`` entrypoint).
* :mod:`sdnet_jax.evaluation.ctrl_metrics` — CSC-CTRL metrics and figures: PSNR, nearest-subspace
  accuracy, Fréchet feature distances, reconstruction grids, cosine heat-maps, atoms.
* :mod:`sdnet_jax.evaluation.feature_nets` — swappable feature networks for the Fréchet distance.
"""
