"""Evaluation of trained models.

* :mod:`sdnet_jax.evaluation.robustness` — classifiers under corruptions, test-time λ sweeps, the
  adaptive λ rule and PGD attacks (the ``python -m sdnet_jax.evaluate`` entrypoint).
* :mod:`sdnet_jax.evaluation.ctrl` — a CSC-CTRL run's evaluation, from the metrics of
  :mod:`~sdnet_jax.evaluation.reconstruction` (MSE, PSNR beside the mean image's, spread),
  :mod:`~sdnet_jax.evaluation.subspace` (nearest-subspace accuracy of the features) and
  :mod:`~sdnet_jax.evaluation.frechet` (Fréchet feature distances), with the PNG
  :mod:`~sdnet_jax.evaluation.figures` (reconstruction grids, cosine heat-maps, atoms).
* :mod:`sdnet_jax.evaluation.feature_nets` — swappable feature networks for the Fréchet distance.
"""
