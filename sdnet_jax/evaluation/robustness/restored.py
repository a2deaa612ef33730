"""What both protocols of the robustness job start from: the restored classifier, its
:class:`~sdnet_jax.evaluation.robustness.programs.Evaluator`, the test split and the report's
header."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections

from sdnet_jax.errors import ConfigError
from sdnet_jax.evaluation.robustness.config import STEM, Batch
from sdnet_jax.evaluation.robustness.programs import Evaluator
from sdnet_jax.evaluation.robustness.sweeps import SplitBatches
from sdnet_jax.models.csc import CSCConv
from sdnet_jax.runs import TrainState, load_classifier
from sdnet_jax.runtime import parallel


@dataclasses.dataclass(frozen=True)
class Restored:
    """A restored classifier ready to be evaluated.

    Attributes:
      config: the run's training config (``data_dir`` overridden as asked).
      state: its restored state, replicated over ``mesh``.
      info: its data set's info.
      mesh: the data mesh.
      has_csc: whether the model has a CSC stem (then λ can be swept).
      default_lam: the trained λ (``None`` without CSC layers).
      evaluator: the jitted programs.
      test: the test split's batches.
    """

    config: ml_collections.ConfigDict
    state: TrainState
    info: Any
    mesh: jax.sharding.Mesh
    has_csc: bool
    default_lam: float | None
    evaluator: Evaluator
    test: SplitBatches

    def batches(self, split: str, e: Any, max_examples: int | None = None) -> SplitBatches:
        """``split``'s batches at ``e.batch_size``, at most ``max_examples`` (default
        ``e.max_examples``)."""
        return _split_batches(self.config, split, e, max_examples)

    def recalibration_batch(self, e: Any) -> Batch | None:
        """The first ``e.bn_recalibration_examples`` validation images as one batch (labels
        unused), or ``None`` when that option is 0.

        Raises:
          ConfigError: when the validation split is smaller.
        """
        n = e.bn_recalibration_examples
        if not n:
            return None
        if self.info.num_validation < n:
            raise ConfigError(
                f"config.eval.bn_recalibration_examples={n} is more than the run's "
                f"{self.info.num_validation} validation examples."
            )
        return next(iter(SplitBatches(
            self.config, "validation", batch_size=n, max_examples=n,
            data_dir=self.config.data.data_dir or None,
        )))  # fmt: skip


def _split_batches(
    config: ml_collections.ConfigDict, split: str, e: Any, max_examples: int | None = None
) -> SplitBatches:
    return SplitBatches(
        config,
        split,
        batch_size=e.batch_size,
        max_examples=e.max_examples if max_examples is None else max_examples,
        data_dir=config.data.data_dir or None,
    )


def restore(workdir: str, e: Any, *, corruption_names: Sequence[str], table: str) -> Restored:
    """Restores ``e.checkpoint`` of the classifier in ``workdir`` and builds its evaluator for
    ``corruption_names`` of ``table`` (see :class:`Evaluator`)."""
    which = e.checkpoint if e.checkpoint in ("best", "latest") else int(e.checkpoint)
    config, model, state, info = load_classifier(workdir, which=which, data_dir=e.data_dir or None)
    has_csc = STEM in state.params
    default_lam = float(config.model.csc.get("lam", CSCConv.lam)) if has_csc else None
    evaluator = Evaluator(
        model,
        info,
        corruption_names=corruption_names,
        table=table,
        scope=e.lam_scope,
        default_lam=default_lam or 0.0,
        seed=e.seed,
        pgd_steps=e.pgd_steps,
        random_start=e.pgd_random_start,
    )
    test = _split_batches(config, "test", e)
    return Restored(
        config, state, info, parallel.data_mesh(), has_csc, default_lam, evaluator, test
    )


def report_header(workdir: str, e: Any, restored: Restored) -> dict[str, Any]:
    """The fields every report starts with: the checkpoint, the model, λ and the options."""
    return {
        "workdir": os.path.abspath(workdir),
        "checkpoint_step": int(jax.device_get(restored.state.step)),
        "model": restored.config.model.name,
        "dataset": restored.config.data.name,
        "has_csc_layers": restored.has_csc,
        "default_lam": restored.default_lam,
        "lam_scope": e.lam_scope if restored.has_csc else None,
        "num_test_examples": restored.test.num_examples,
        "eval": e.to_dict(),
    }
