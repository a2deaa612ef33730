"""How a classifier's accuracy falls when its test images are only blurred: the yardstick for its
accuracy on blurry reconstructions X̂ (``config.eval.fidelity_classifier_workdir``).

    python -m benchmarks.classifier_blur CLASSIFIER_WORKDIR [--sigmas 0,0.5,1,1.5,2]
        [--max_examples 2000] [--data_dir DIR]

For each Gaussian blur σ (pixels; ``scipy.ndimage.gaussian_filter`` per image and channel,
'reflect' borders) of the classifier's own test images in [-1, 1], prints the PSNR and SSIM of the
blurred images against the sharp ones and the classifier's accuracy on them
(``evaluation.fidelity``), and writes ``CLASSIFIER_WORKDIR/blur.json``. A reconstruction whose
PSNR / SSIM matches a σ but whose accuracy is far below that σ's has lost more than sharpness.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import scipy.ndimage

from sdnet_jax import cli
from sdnet_jax.data import input_pipeline, pixels
from sdnet_jax.errors import UserError
from sdnet_jax.evaluation import fidelity, reconstruction


def blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """NHWC images blurred by a Gaussian of ``sigma`` pixels over H and W (σ = 0: unchanged)."""
    if sigma == 0:
        return x.copy()
    return scipy.ndimage.gaussian_filter(x, sigma=(0, sigma, sigma, 0), mode="reflect")


def test_images(dataset: str, data_dir: str | None, max_examples: int):
    """The first ``max_examples`` test images of ``dataset`` in [-1, 1] and their labels."""
    xs, ys, seen = [], [], 0
    for batch in input_pipeline.eval_iterator(
        dataset, "test", data_dir=data_dir, global_batch_size=500, validation_size=0
    ):
        keep = np.asarray(batch["mask"], bool)
        xs.append(np.asarray(pixels.symmetric_from_uint8(batch["image"]))[keep])
        ys.append(np.asarray(batch["label"])[keep])
        seen += int(keep.sum())
        if seen >= max_examples:
            break
    return np.concatenate(xs)[:max_examples], np.concatenate(ys)[:max_examples]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdir")
    parser.add_argument("--sigmas", default="0,0.5,0.75,1,1.5,2")
    parser.add_argument("--max_examples", type=int, default=2000)
    parser.add_argument("--data_dir", default=None)
    args = parser.parse_args(argv)
    workdir = cli.absolute_workdir(args.workdir)
    sigmas = [float(s) for s in args.sigmas.split(",")]
    if any(s < 0 for s in sigmas):
        raise ValueError(f"--sigmas must be >= 0, got {args.sigmas!r}.")
    classifier = fidelity.load_classifier(workdir, data_dir=args.data_dir)
    x, y = test_images(classifier.dataset, args.data_dir, args.max_examples)
    rows = []
    for sigma in sigmas:
        blurred = blur(x, sigma).astype(np.float32)
        accuracy = fidelity.classifier_metrics(classifier, x, blurred, y)
        row = {
            "sigma": sigma,
            "psnr": reconstruction.psnr(x, blurred).mean,
            "ssim": float(fidelity.ssim(x, blurred).mean()),
            "accuracy": accuracy["classifier_accuracy_x_hat"],
            "accuracy_ratio": accuracy["classifier_accuracy_ratio"],
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    with open(os.path.join(workdir, "blur.json"), "w") as f:
        json.dump(
            {"classifier": classifier.name, "num_examples": len(y), "rows": rows}, f, indent=2
        )
    return rows


if __name__ == "__main__":
    try:
        main()
    except (UserError, ValueError) as err:  # a missing / wrong workdir, bad --sigmas
        cli.fail(err)
