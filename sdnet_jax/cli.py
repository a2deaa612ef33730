"""What the absl entrypoints (``sdnet_jax.main``, ``sdnet_jax.evaluate``) share: the multi-host
flags, one-line errors for bad flags and configs, and the runner."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from absl import app, flags

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


def fail(err: Exception) -> None:
    """One line on stderr labelled by the error's kind (``errors.UserError.label``; a plain
    ``ValueError`` from a validator is a config error), exit status 1."""
    label = getattr(err, "label", "config error")
    message = " ".join(str(err).split())
    sys.stderr.write(f"FATAL {label}: {message}\n")
    sys.exit(1)


def absolute_workdir(workdir: str) -> str:
    """``--workdir`` as an absolute path (a relative one is relative to the current directory;
    Orbax and subprocesses need it absolute)."""
    return os.path.abspath(os.path.expanduser(workdir))


def run(main: Callable[[list[str]], None]) -> None:
    app.run(main, flags_parser=parse_flags)
