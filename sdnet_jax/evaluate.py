"""Robustness evaluation entrypoint: ``python -m sdnet_jax.evaluate --workdir=DIR``.

Evaluates the classifier trained in ``--workdir`` (its ``config.json`` and checkpoints) under input
corruptions, over a test-time λ grid, with the adaptive λ rule (fitted on validation) and under
white-box PGD; writes ``robustness.json`` and PNG plots to ``<workdir>/robustness`` (see
:mod:`sdnet_jax.evaluation.robustness`). Options go on the command line as overrides of the locked
default config, e.g.::

    python -m sdnet_jax.evaluate --workdir=workdir/digits_sdnet \\
        --config.eval.lams='(0.1, 0.3)' --config.eval.corruptions='("gaussian_noise",)' \\
        --config.eval.max_examples=1000 --config.eval.pgd_steps=20

The eval config is validated before anything compiles. Multi-host: pass
``--coordinator_address/--num_processes/--process_id`` or ``--distributed`` as for training.
"""

from __future__ import annotations

from absl import app, flags, logging
from ml_collections import config_flags

from sdnet_jax import cli
from sdnet_jax.errors import UserError
from sdnet_jax.evaluation import robustness

FLAGS = flags.FLAGS
try:  # ml_collections reads the --config.* overrides of sys.argv here, at the definition
    config_flags.DEFINE_config_dict(
        "config", robustness.default_config(), "robustness evaluation options", lock_config=True
    )
except cli.FLAG_ERRORS as err:  # a misspelt or ill-typed override: one line, not a traceback
    cli.flag_error(err)
flags.DEFINE_string("workdir", None, "the training run's directory (config.json, checkpoints)")
cli.define_multihost_flags()
flags.mark_flags_as_required(["workdir"])


def main(argv: list[str]) -> None:
    """Starts the multi-process runtime if asked, then runs the evaluation (library call)."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    workdir = cli.absolute_workdir(FLAGS.workdir)
    cli.initialize_multihost()
    try:  # config / workdir / checkpoint / data errors: one clear line
        report = robustness.evaluate_checkpoint(workdir, FLAGS.config.eval)
    except (ValueError, UserError) as err:
        cli.fail(err)
    logging.info("done in %.0fs", report["elapsed_s"])


def cli_main() -> None:
    cli.run(main)


if __name__ == "__main__":
    cli_main()
