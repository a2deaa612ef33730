"""Why the stem's reconstruction error can *fall* as Gaussian noise rises (issue 23).

SDNet's adaptive rule assumes that a noisier input is reconstructed worse by the stem's CSC layer.
On digits the robustness job measured the opposite for Gaussian noise. This script separates the
candidate causes on a trained SDNet (its stem, trained λ, test images):

* ``clipped``: SDNet's Gaussian noise (on 0–255 pixels, clipped to the valid range, truncated to
  uint8; :mod:`sdnet_jax.evaluation.robustness.sdnet_noise`);
* ``unclipped``: the same ``z`` added without clipping or truncation (zero-mean noise);
* ``mean shift``: no noise at all, only the deterministic brightening the clipping causes in
  expectation, ``E[clip(x + σz, 0, 1)] − x`` (a closed form per pixel);

and splits ``‖x − Az‖²`` (normalised input space, summed per image, averaged over images) into
the pixels that are black in the clean image (the background) and the rest.

    python -m benchmarks.stem_error_vs_noise WORKDIR [--max_examples=1000] [--out=FILE.json]
"""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from sdnet_jax import runs, workarounds
from sdnet_jax.data import input_pipeline
from sdnet_jax.evaluation.robustness import sdnet_noise
from sdnet_jax.models import inverse

FLAGS = flags.FLAGS
flags.DEFINE_integer("max_examples", 1000, "test images used")
flags.DEFINE_string("out", "", "write the table as JSON here")
SIGMAS = (0.0, 0.04, 0.08, 0.12, 0.16, 0.2)  # SDNet's Gaussian levels (0.02 steps), a subset


def expected_clip(x: jax.Array, sigma: float) -> jax.Array:
    """``E[clip(x + σz, 0, 1)]`` for ``z ~ N(0, 1)``, elementwise (x in [0, 1])."""
    if sigma == 0:
        return x
    cdf = lambda t: 0.5 * (1 + jax.scipy.special.erf(t / math.sqrt(2)))
    pdf = lambda t: jnp.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)
    a, b = (0 - x) / sigma, (1 - x) / sigma  # E[clip(y, 0, 1)], y ~ N(x, σ²)
    return x * (cdf(b) - cdf(a)) + sigma * (pdf(a) - pdf(b)) + (1 - cdf(b))


def measure(workdir: str, max_examples: int, sigmas: tuple[float, ...] = SIGMAS) -> dict:
    """The table of the module docstring for the classifier in ``workdir`` (its first
    ``max_examples`` test images), as a dict with one row per (σ, variant)."""
    config, model, state, info = runs.load_classifier(workdir)
    variables = jax.device_get({"params": state.params, **state.model_state})
    mean, std = np.asarray(info.mean, np.float32), np.asarray(info.std, np.float32)
    batches = input_pipeline.eval_iterator(
        config.data.name, "test", global_batch_size=250, **runs.data_source(config.data)
    )
    images = []
    for batch in batches:
        images.append(batch["image"][batch["mask"] > 0])
        if sum(len(x) for x in images) >= max_examples:
            break
    levels = np.concatenate(images)[:max_examples].astype(np.float32)  # whole grey levels

    @jax.jit
    def errors(x_normalised: jax.Array, background: jax.Array) -> dict[str, jax.Array]:
        _, reconstruction = inverse.hidden_features(model, variables, x_normalised, (0, 0))
        squared = jnp.square(x_normalised - reconstruction)
        return {
            "total": jnp.mean(jnp.sum(squared, (1, 2, 3))),
            "background": jnp.mean(jnp.sum(squared * background, (1, 2, 3))),
            "foreground": jnp.mean(jnp.sum(squared * (1 - background), (1, 2, 3))),
            "input_mean": jnp.mean(x_normalised),
        }

    background = (levels == 0).astype(np.float32)
    key = jax.random.key(0)
    z = np.asarray(jax.random.normal(key, levels.shape))
    rows = []
    for sigma in sigmas:
        unit = levels / 255.0
        variants = {
            "clipped": np.asarray(sdnet_noise.noise_255(levels, key, "gaussian", sigma)) / 255,
            "unclipped": unit + sigma * z,
            "mean shift": np.asarray(expected_clip(jnp.asarray(unit), sigma)),
        }
        for name, noisy in variants.items():
            normalised = ((noisy - mean) / std).astype(np.float32)
            out = jax.device_get(errors(normalised, background))
            rows.append({"sigma": sigma, "variant": name, **{k: float(v) for k, v in out.items()}})
    return {
        "workdir": workdir,
        "model": config.model.name,
        "dataset": config.data.name,
        "num_examples": len(levels),
        "background_fraction": float(background.mean()),
        "rows": rows,
    }


def main(argv: list[str]) -> None:
    workarounds.prefer_eigen_convolutions()
    summary = measure(argv[1], FLAGS.max_examples)
    for r in summary["rows"]:
        print(
            f"σ={r['sigma']:<5g} {r['variant']:<11} ‖x−Az‖²: total {r['total']:7.3f}  background "
            f"{r['background']:7.3f}  foreground {r['foreground']:7.3f}  "
            f"mean input {r['input_mean']:+.3f}"
        )
    print(
        f"{summary['num_examples']} test images, background (black) pixels "
        f"{summary['background_fraction']:.1%}"
    )
    if FLAGS.out:
        with open(FLAGS.out, "w") as f:
            json.dump(summary, f, indent=2)


if __name__ == "__main__":
    app.run(main)
