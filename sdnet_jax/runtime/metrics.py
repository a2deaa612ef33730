"""Metric logging for training jobs (main process only): console, TensorBoard, JSON lines.

TensorBoard event files are written with ``tensorboardX`` (no TensorFlow needed) under
``<workdir>/tensorboard``; every scalar also goes to ``<workdir>/metrics.jsonl`` (one JSON object per
logging step) so runs can be compared without TensorBoard.
"""

from __future__ import annotations

import json
import logging as logging_std
import os
import time
from typing import Any

import numpy as np
from absl import logging

from sdnet_jax.runtime import parallel


class MetricWriter:
    """Writes scalars/images/config; a no-op on every process but process 0."""

    def __init__(self, workdir: str):
        self.enabled = parallel.is_main_process()
        self._tb = None
        if self.enabled:
            from tensorboardX import SummaryWriter

            os.makedirs(workdir, exist_ok=True)
            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
            self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")

    def write_scalars(self, step: int, scalars: dict[str, Any]) -> None:
        if not self.enabled:
            return
        clean = {k: float(np.asarray(v)) for k, v in scalars.items()}
        for k, v in clean.items():
            self._tb.add_scalar(k, v, step)
        self._jsonl.write(json.dumps({"step": step, **clean}) + "\n")
        self._jsonl.flush()

    def write_images(self, step: int, images: dict[str, np.ndarray]) -> None:
        """Images as HWC float arrays in [0, 1]."""
        if not self.enabled:
            return
        for k, v in images.items():
            self._tb.add_image(k, np.clip(np.asarray(v), 0, 1), step, dataformats="HWC")

    def write_config(self, config_json: str) -> None:
        if self.enabled:
            self._tb.add_text("config", f"```\n{config_json}\n```", 0)

    def flush(self) -> None:
        if self.enabled:
            self._tb.flush()
            self._jsonl.flush()

    def close(self) -> None:
        if self.enabled:
            self._tb.close()
            self._jsonl.close()


class Throughput:
    """Steps/s, examples/s and ETA between logging calls."""

    def __init__(self, start_step: int, total_steps: int, examples_per_step: int):
        self.total_steps = total_steps
        self.examples_per_step = examples_per_step
        self._step, self._time = start_step, time.perf_counter()

    def __call__(self, step: int) -> dict[str, float]:
        now = time.perf_counter()
        steps_per_sec = (step - self._step) / max(now - self._time, 1e-9)
        self._step, self._time = step, now
        return {
            "steps_per_sec": steps_per_sec,
            "examples_per_sec": steps_per_sec * self.examples_per_step,
            "eta_min": (self.total_steps - step) / max(steps_per_sec, 1e-9) / 60.0,
        }


class _QuietLibraries(logging_std.Filter):
    """Drops INFO/DEBUG records of chatty libraries (Orbax logs every save step by step)."""

    def filter(self, record: logging_std.LogRecord) -> bool:
        noisy = any(
            f"{os.sep}{lib}{os.sep}" in record.pathname
            for lib in ("orbax", "etils", "tensorflow_datasets")
        )
        return record.levelno >= logging_std.WARNING or not noisy


def quiet_library_logs() -> None:
    """Installs :class:`_QuietLibraries` on absl's handler (idempotent)."""
    handler = logging.get_absl_handler()
    if not any(isinstance(f, _QuietLibraries) for f in handler.filters):
        handler.addFilter(_QuietLibraries())


def console(step: int, total: int, scalars: dict[str, Any]) -> None:
    if parallel.is_main_process():
        text = "  ".join(f"{k}={float(np.asarray(v)):.4g}" for k, v in sorted(scalars.items()))
        logging.info("step %d/%d  %s", step, total, text)
