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
    from sdnet_jax.train import parallel

    parallel.initialize_distributed(
        FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id, auto=FLAGS.distributed
    )
    os.makedirs(FLAGS.workdir, exist_ok=True)
    try:
        results = run(FLAGS.config, FLAGS.workdir)
    except ValueError as err:  # config / data errors: one clear line, nothing compiled
        sys.stderr.write(f"FATAL config error: {err}\n")
        sys.exit(1)
    logging.info("results: %s", results)


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing, with config override mistakes (an unknown or misspelt field of the locked
    config, a value of the wrong type) reported as one line instead of a traceback."""
    try:
        return FLAGS(argv)
    except (flags.Error, KeyError, AttributeError, TypeError, ValueError) as err:
        message = str(err).strip("'\"").replace("\\'", "'").replace("\\n", " ")
        sys.stderr.write(f"FATAL Flags parsing error: {' '.join(message.split())}\n")
        sys.stderr.write("Pass --helpfull to see help on flags.\n")
        sys.exit(1)


def cli() -> None:
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    cli()
