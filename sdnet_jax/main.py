"""Training entrypoint: ``python -m sdnet_jax.main --config=configs/<exp>.py --workdir=DIR``.

Overrides go on the command line (``--config.optim.lr=0.05``); the config is locked, so a misspelt
field is an error. The config is validated before anything compiles. Multi-host: pass
``--coordinator_address/--num_processes/--process_id`` (GPU hosts, local processes) or
``--distributed`` (auto-detected TPU pod slices, SLURM). Restarting with the same ``--workdir``
resumes from its latest checkpoint.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from sdnet_jax import cli

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "experiment config file", lock_config=True)
flags.DEFINE_string("workdir", None, "directory for checkpoints, logs and results")
flags.DEFINE_bool("distributed", False, "call jax.distributed.initialize() with auto-detection")
flags.DEFINE_string("coordinator_address", None, "multi-process: HOST:PORT of process 0")
flags.DEFINE_integer("num_processes", None, "multi-process: number of processes")
flags.DEFINE_integer("process_id", None, "multi-process: index of this process")
flags.mark_flags_as_required(["config", "workdir"])


def run(config, workdir: str) -> dict:
    """Dispatches a validated config to its training job (library call, no logic here)."""
    task = config.get("task")
    if task == "classifier":
        from sdnet_jax.train import classifier

        return classifier.train_and_evaluate(config, workdir)
    if task == "ctrl":
        from sdnet_jax.train import ctrl

        return ctrl.train_and_evaluate(config, workdir)
    raise ValueError(f"config.task must be 'classifier' or 'ctrl', got {task!r}.")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    # Make the repo-root `configs` package importable for configs that import their base.
    sys.path.insert(0, os.getcwd())
    cli.initialize_multihost()
    os.makedirs(FLAGS.workdir, exist_ok=True)
    try:
        results = run(FLAGS.config, FLAGS.workdir)
    except ValueError as err:  # config / data errors: one clear line, nothing compiled
        cli.fail(err)
    logging.info("results: %s", results)


def cli_main() -> None:
    cli.run(main)


if __name__ == "__main__":
    cli_main()
