"""What the absl entrypoints (``sdnet_jax.main``, ``sdnet_jax.evaluate``) share: the multi-host
flags, one-line errors for bad flags and configs, and the runner."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

from absl import app, flags

from sdnet_jax.errors import RunError

FLAGS = flags.FLAGS


def define_multihost_flags() -> None:
    """``--distributed`` (auto-detected cluster) or ``--coordinator_address/--num_processes/
    --process_id`` (GPU hosts, local processes), passed to ``jax.distributed.initialize``."""
    flags.DEFINE_bool("distributed", False, "call jax.distributed.initialize() with auto-detection")
    flags.DEFINE_string("coordinator_address", None, "multi-process: HOST:PORT of process 0")
    flags.DEFINE_integer("num_processes", None, "multi-process: number of processes")
    flags.DEFINE_integer("process_id", None, "multi-process: index of this process")


def initialize_multihost() -> None:
    """Sets this project's CPU XLA options (:mod:`sdnet_jax.workarounds`), starts JAX's multi-process
    runtime when the flags ask for it, quiets library logs."""
    from sdnet_jax import workarounds
    from sdnet_jax.runtime import metrics, parallel

    workarounds.prefer_eigen_convolutions()

    parallel.initialize_distributed(
        FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id, auto=FLAGS.distributed
    )
    metrics.quiet_library_logs()


FLAG_ERRORS = (flags.Error, KeyError, AttributeError, TypeError, ValueError, OSError)


def flag_error(err: Exception) -> None:
    """A bad flag or config override (an unknown or misspelt field of the locked config, a value
    of the wrong type, a config file that does not exist) as one line, exit status 1."""
    message = str(err).strip("'\"").replace("\\'", "'").replace("\\n", " ")
    sys.stderr.write(f"FATAL Flags parsing error: {' '.join(message.split())}\n")
    sys.stderr.write("Pass --helpfull to see help on flags.\n")
    sys.exit(1)


def importable_configs(argv: list[str]) -> None:
    """Checks that a ``--config=<dir>/configs/<name>.py`` file exists and makes its package
    importable (its configs import their base: ``from configs import common``) from any current
    directory, by putting the folder above it on ``sys.path`` before the file is read."""
    for arg in argv:
        if arg.startswith("--config=") and arg.endswith(".py"):
            path = os.path.abspath(os.path.expanduser(arg[len("--config=") :]))
            if not os.path.isfile(path):
                flag_error(FileNotFoundError(f"--config: no config file {path}"))
            folder = os.path.dirname(path)
            if os.path.exists(os.path.join(folder, "__init__.py")):
                root = os.path.dirname(folder)
                if root not in sys.path:
                    sys.path.insert(0, root)


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing, with the mistakes of :func:`flag_error` reported as one line instead of
    a traceback."""
    importable_configs(argv)
    try:
        return FLAGS(argv)
    except FLAG_ERRORS as err:
        flag_error(err)


def fail(err: Exception) -> None:
    """One line on stderr labelled by the error's kind (``errors.UserError.label``; a plain
    ``ValueError`` from a validator is a config error), exit status 1."""
    label = getattr(err, "label", "config error")
    message = " ".join(str(err).split())
    sys.stderr.write(f"FATAL {label}: {message}\n")
    sys.exit(1)


def absolute_workdir(workdir: str) -> str:
    """``--workdir`` as an absolute path (a relative one is relative to the current directory;
    Orbax and subprocesses need it absolute); a path that names a file is one ``FATAL`` line."""
    path = os.path.abspath(os.path.expanduser(workdir))
    if os.path.exists(path) and not os.path.isdir(path):
        fail(RunError(f"--workdir {path} is a file, not a folder: pass a folder (a new or an "
                      "existing run's)."))  # fmt: skip
    return path


# Exit status of a run stopped by a signal (checkpointed, resumable): 128 + the signal's number,
# as a shell reports it (130 SIGINT, 143 SIGTERM), so `&&` chains and schedulers do not take it
# for a finished run (SLURM's --requeue and Kubernetes restart policies key on it).
def exit_interrupted(results: dict) -> None:
    """Ends an entrypoint whose run stopped before its last step: one line, status 128 + signal."""
    signum = int(results.get("signal") or signal.SIGTERM)
    sys.stderr.write(
        f"FATAL run interrupted: stopped by {signal.Signals(signum).name} at step "
        f"{results['step']} and checkpointed; rerun the same command to resume.\n"
    )
    sys.exit(128 + signum)


def run(main: Callable[[list[str]], None]) -> None:
    app.run(main, flags_parser=parse_flags)
