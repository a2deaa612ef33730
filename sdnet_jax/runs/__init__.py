"""Opening a run: a config -> its model(s), optimizer(s) and state; a workdir -> the trained state.

The layer that training, evaluation, notebooks and benchmarks share (training builds its state
with it; evaluation restores with it and never imports :mod:`sdnet_jax.train`):

* :mod:`sdnet_jax.runs.common` — dtypes, the data-source arguments of ``config.data``, the step
  count, and restoring a checkpoint of a workdir against an abstract state.
* :mod:`sdnet_jax.runs.classifier` — ``TrainState``, the classifier model / optimizer / initial
  state of a config, :func:`load_classifier`.
* :mod:`sdnet_jax.runs.ctrl` — ``CTRLState``, the CTRL encoder / decoder / two optimizers /
  initial state of a config, :func:`load_ctrl`.
"""

from sdnet_jax.runs.classifier import TrainState, load_classifier
from sdnet_jax.runs.common import DTYPES, data_source, num_train_steps
from sdnet_jax.runs.ctrl import CTRLState, load_ctrl

__all__ = [
    "DTYPES",
    "CTRLState",
    "TrainState",
    "data_source",
    "load_classifier",
    "load_ctrl",
    "num_train_steps",
]
