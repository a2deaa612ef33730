"""Training entrypoint: ``python -m sdnet_jax.main --config=configs/<exp>.py --workdir=DIR``.

Overrides go on the command line (``--config.optim.lr=0.05``); the config is locked, so a misspelt
field is an error. The config is validated before anything compiles. Multi-host: pass
``--coordinator_address/--num_processes/--process_id`` (GPU hosts, local processes) or
``--distributed`` (auto-detected TPU pod slices, SLURM). Restarting with the same ``--workdir``
resumes from its latest checkpoint.
"""

from __future__ import annotations

from absl import app, flags, logging
from ml_collections import config_flags

from sdnet_jax import cli
from sdnet_jax.errors import UserError

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "experiment config file", lock_config=True)
flags.DEFINE_string("workdir", None, "directory for checkpoints, logs and results")
cli.define_multihost_flags()
flags.mark_flags_as_required(["config", "workdir"])


def job(config):
    """The training module for ``config.task`` (``train.classifier`` or ``train.ctrl``)."""
    task = config.get("task")
    if task == "classifier":
        from sdnet_jax.train import classifier

        return classifier
    if task == "ctrl":
        from sdnet_jax.train import ctrl

        return ctrl
    raise ValueError(f"config.task must be 'classifier' or 'ctrl', got {task!r}.")


def run(config, workdir: str) -> dict:
    """Validates ``config`` and runs its training job in ``workdir`` (library calls, no logic)."""
    return job(config).train_and_evaluate(config, workdir)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    workdir = cli.absolute_workdir(FLAGS.workdir)
    try:  # ml_collections reports a config file that failed to load only when it is read
        config = FLAGS.config
    except cli.FLAG_ERRORS as err:
        cli.flag_error(err)
    cli.initialize_multihost()
    try:  # config and data errors: one line, before anything compiles
        job(config).validate_config(config)
    except ValueError as err:
        cli.fail(err)
    try:
        results = run(config, workdir)
    except UserError as err:  # unreadable checkpoints, a diverged run: one line, exit status 1
        cli.fail(err)
    if results.get("interrupted"):  # SIGTERM / SIGINT: checkpointed, not finished
        cli.exit_interrupted(results)
    logging.info("results: %s", results)


def cli_main() -> None:
    cli.run(main)


if __name__ == "__main__":
    cli_main()
