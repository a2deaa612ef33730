"""The hidden-feature visualisation job (SDNet's ``visualize.py``): restore a trained SDNet, map the
codes of chosen layers of a few images back to the input (:mod:`sdnet_jax.models.inverse`), and
write them as PNG grids and TensorBoard images.

Display, as SDNet's: each reconstruction is un-normalised to pixels (``x·std + mean``), scaled to
[0, 1] per image and channel (min-max) and histogram-equalised (:mod:`sdnet_jax.viz`). The images
are the first ``num_images`` of the split, sorted by label.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from absl import logging

from sdnet_jax import viz
from sdnet_jax.data import input_pipeline, pixels
from sdnet_jax.errors import ConfigError, RunError
from sdnet_jax.models import inverse
from sdnet_jax.runs import data_source, load_classifier
from sdnet_jax.runtime.metrics import MetricWriter

SPLITS = ("test", "validation")
_LAYER = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


def parse_layers(text: str | Sequence[str]) -> list[inverse.Layer] | None:
    """``'0:0,1:1'`` (or a list of ``'stage:block'`` strings) -> ``[(0, 0), (1, 1)]``; empty or
    ``'auto'`` -> ``None`` (the default layers).

    Raises:
      ConfigError: naming ``--layers``, for anything else.
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    items = [item for item in items if item.strip()]
    if not items or (len(items) == 1 and items[0].strip() == "auto"):
        return None
    layers = []
    for item in items:
        match = _LAYER.match(item)
        if match is None:
            raise ConfigError(
                f"--layers must be 'stage:block' pairs separated by commas (e.g. 0:0,1:1,3:2; "
                f"0:0 = the stem) or 'auto', got {item!r}."
            )
        layers.append((int(match.group(1)), int(match.group(2))))
    return layers


def _check_options(num_images: int, split: str, checkpoint: str, scale: int) -> None:
    if not isinstance(num_images, int) or num_images < 1:
        raise ConfigError(f"--num_images must be a positive integer, got {num_images!r}.")
    if split not in SPLITS:
        raise ConfigError(f"--split must be one of {SPLITS}, got {split!r}.")
    if not (checkpoint in ("best", "latest") or str(checkpoint).isdigit()):
        raise ConfigError(
            f"--checkpoint must be 'best', 'latest' or a step number, got {checkpoint!r}."
        )
    if not isinstance(scale, int) or scale < 1:
        raise ConfigError(f"--scale must be a positive integer, got {scale!r}.")


def _first_images(config: Any, split: str, num_images: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``num_images`` images of ``split`` (uint8) and labels, sorted by label."""
    batch = next(
        input_pipeline.eval_iterator(
            config.data.name,
            split,
            global_batch_size=num_images,
            process_index=0,
            process_count=1,
            **data_source(config.data),
        )
    )
    keep = batch["mask"] > 0
    images, labels = batch["image"][keep], batch["label"][keep]
    order = np.argsort(labels, kind="stable")
    return images[order], labels[order]


def _label(layer: inverse.Layer) -> str:
    return "stem" if layer == inverse.STEM else f"stage{layer[0]}_block{layer[1]}"


def visualize_checkpoint(
    workdir: str,
    *,
    layers: Sequence[inverse.Layer] | None = None,
    num_images: int = 10,
    split: str = "test",
    checkpoint: str = "best",
    output_dir: str = "",
    data_dir: str | None = None,
    scale: int = 1,
) -> dict[str, Any]:
    """Maps the codes of ``layers`` of the SDNet trained in ``workdir`` back to the input.

    Writes to ``output_dir`` (default ``<workdir>/visualize``): ``hidden_features.png`` (first row
    the input images, then one row per layer, histogram-equalised), ``layer_<stage>_<block>.png``
    per layer (rows: min-max scaled, histogram-equalised) and ``visualize.json``; and the same
    images to the run's TensorBoard (``<workdir>/tensorboard``, tag ``hidden_features/...``, at
    the checkpoint's step).

    Args:
      workdir: a classifier run's directory.
      layers: ``(stage, block)`` pairs, ``(0, 0)`` the stem; ``None``: SDNet's layers (0, 0),
        (1, 1), (1, 2), (2, 2), (3, 2) that this model has and can invert (the stem alone for
        an SDNet with shortcuts).
      num_images: images shown (the first of the split, sorted by label).
      split: ``'test'`` or ``'validation'``.
      checkpoint: ``'best'`` (on validation), ``'latest'`` or a step number.
      output_dir: where the PNGs go.
      data_dir: overrides the run's ``config.data.data_dir``.
      scale: PNG upscaling factor (nearest neighbour).

    Returns:
      A summary: the checkpoint step, the layers, the code shapes and the files written.

    Raises:
      ConfigError: a bad option, or a layer the model does not have or cannot invert.
      RunError: a workdir without a classifier run, or a model that cannot be inverted at all
        (a ResNet).
    """
    _check_options(num_images, split, checkpoint, scale)
    started = time.perf_counter()
    which = checkpoint if checkpoint in ("best", "latest") else int(checkpoint)
    config, model, state, info = load_classifier(workdir, which=which, data_dir=data_dir)
    name = config.model.name
    available = inverse.invertible_layers(model)
    if not available:
        raise RunError(
            f"{workdir} holds a {name}, which has no CSC stem, so its features cannot be mapped "
            "back to the input: visualise an SDNet run (the stem of any SDNet; every layer of "
            "an -All model without shortcut, e.g. sdnet18_all_noshortcut)."
        )
    if layers is None:
        layers = [layer for layer in inverse.SDNET_LAYERS if layer in available]
    try:
        layers = [inverse.check_layer(model, layer) for layer in layers]
    except ValueError as err:
        raise ConfigError(f"--layers: {name}: {err}") from None

    images, labels = _first_images(config, split, num_images)
    variables = jax.device_get({"params": state.params, **state.model_state})
    mean, std = np.asarray(info.mean, np.float32), np.asarray(info.std, np.float32)
    inputs = np.asarray(pixels.unit_from_uint8(images))
    images = np.asarray(pixels.normalised_from_uint8(images, mean, std))
    step = int(jax.device_get(state.step))
    rows, summary, tensorboard = [inputs], [], {"hidden_features/input": viz.image_grid(inputs)}
    output_dir = output_dir or os.path.join(workdir, "visualize")
    os.makedirs(output_dir, exist_ok=True)
    for layer in layers:
        code, reconstruction = jax.jit(inverse.hidden_features, static_argnums=(0, 3))(
            model, variables, images, layer
        )
        scaled = viz.minmax_per_channel(np.asarray(reconstruction) * std + mean)
        equalized = viz.equalize(scaled)
        rows.append(equalized)
        path = os.path.join(output_dir, f"layer_{layer[0]}_{layer[1]}.png")
        viz.save_png(path, viz.image_grid(np.concatenate([scaled, equalized]), len(images)), scale)
        tag = f"hidden_features/{_label(layer)}"
        tensorboard[f"{tag}/minmax"] = viz.image_grid(scaled)
        tensorboard[f"{tag}/equalized"] = viz.image_grid(equalized)
        summary.append(
            {
                "layer": list(layer),
                "code_shape": list(code.shape[1:]),
                "png": os.path.basename(path),
            }
        )
        logging.info("layer %s: code %s -> %s", layer, code.shape[1:], path)
    grid = viz.image_grid(np.concatenate(rows), len(images))
    viz.save_png(os.path.join(output_dir, "hidden_features.png"), grid, scale)
    writer = MetricWriter(workdir)
    writer.write_images(step, tensorboard)
    writer.close()
    report = {
        "workdir": os.path.abspath(workdir),
        "model": name,
        "checkpoint_step": step,
        "split": split,
        "labels": [int(v) for v in labels],
        "rows": ["input", *(_label(layer) for layer in layers)],
        "layers": summary,
        "elapsed_s": time.perf_counter() - started,
    }
    with open(os.path.join(output_dir, "visualize.json"), "w") as f:
        json.dump(report, f, indent=2)
    return report
