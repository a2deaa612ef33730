"""Evaluation of a CSC-CTRL / CTRL run: the closed loop's metrics and figures (what training
logs at its evaluation cadence and writes to ``results.json``), and the reconstruction of a data set
the model was not trained on (:func:`transfer_reconstruction`, ``benchmarks.ctrl_transfer``)."""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sdnet_jax import ops
from sdnet_jax.data import input_pipeline, pixels
from sdnet_jax.evaluation import (
    feature_nets,
    fidelity,
    figures,
    frechet,
    heldout,
    reconstruction,
    subspace,
)
from sdnet_jax.runs import ctrl as runs_ctrl
from sdnet_jax.runs.common import data_source, train_classes
from sdnet_jax.runtime import parallel
from sdnet_jax.viz import atom_grid


def _feature_net(config: Any):
    if config.eval.feature_net == "classifier":
        return feature_nets.ClassifierFeatures(config.eval.classifier_workdir)
    return feature_nets.RandomConvNet(seed=0)


def _fidelity_classifier(config: Any):
    """The classifier of ``config.eval.fidelity_classifier_workdir`` (``None`` when unset)."""
    workdir = config.eval.fidelity_classifier_workdir
    if not workdir:
        return None
    return fidelity.load_classifier(workdir, data_dir=config.data.data_dir or None)


def make_evaluate(config, info, closed_loop, workdir: str):
    """``(state, split) -> metrics``; also writes PNG figures to ``workdir/images``."""
    data = config.data
    feature_net = _feature_net(config)
    classifier = _fidelity_classifier(config)
    seen_classes = train_classes(data)  # None: trained on every class
    mesh = parallel.data_mesh()
    num_classes = info.num_classes

    def features_of(state, batches, limit):
        zs, xs, xhs, zhs, ys = [], [], [], [], []
        seen = 0
        for batch in batches:
            x = pixels.symmetric_from_uint8(batch["image"])
            z, x_hat, z_hat = jax.device_get(closed_loop(state, parallel.shard_batch(
                {"image": np.asarray(x)}, mesh)["image"]))  # fmt: skip
            keep = np.asarray(batch["mask"], bool) if "mask" in batch else slice(None)
            zs.append(z[keep]), xs.append(np.asarray(x)[keep]), xhs.append(x_hat[keep])
            zhs.append(z_hat[keep]), ys.append(np.asarray(batch["label"])[keep])
            seen += len(ys[-1])
            if seen >= limit:
                break
        cat = lambda parts: np.concatenate(parts)[:limit]
        return cat(zs), cat(xs), cat(xhs), cat(zhs), cat(ys)

    def evaluate(state: runs_ctrl.CTRLState, split: str) -> dict[str, float]:
        limit = config.eval.max_examples
        source = data_source(data)
        batches = input_pipeline.eval_iterator(
            data.name, split, global_batch_size=config.eval_batch_size, **source
        )
        z, x, x_hat, z_hat, y = features_of(state, batches, limit)
        train_batches = input_pipeline.eval_iterator(
            data.name, "train", global_batch_size=config.eval_batch_size, **source
        )
        z_train, x_train, *_, y_train = features_of(
            state, train_batches, config.eval.subspace_fit_examples
        )
        terms = ops.ctrl_terms(z, z_hat, y, num_classes, config.ctrl.eps_sq)
        results = {k: float(v) for k, v in terms.items()}
        results["mse"] = float(np.mean(reconstruction.mse(x, x_hat)))
        # psnr, psnr_mean_image (of the mean of the training images the subspaces are fit on),
        # psnr_gain_over_mean_image, spread_x_hat, spread_x: is it a reconstruction or a collapse?
        results.update(reconstruction.collapse_metrics(x, x_hat, x_train.mean(axis=0)))
        # ssim, ssim_mean_image; with a fidelity classifier its accuracy on X and on X̂
        results.update(fidelity.fidelity_metrics(x, x_hat, y, x_train.mean(axis=0), classifier))
        results["sample_cosine_distance"] = float(np.mean(1.0 - np.sum(z * z_hat, axis=-1)))
        results["nearest_subspace_accuracy"] = float(
            subspace.nearest_subspace_accuracy(
                z_train, y_train, z, y, num_classes, config.eval.subspace_components
            )
        )
        distance = frechet.frechet_feature_distance(feature_net, [x], [x_hat])
        results[distance["key"]] = float(distance["value"])
        unseen = None
        if seen_classes is not None:  # trained on some classes: seen_ / unseen_ metrics
            results.update(heldout.seen_unseen_metrics(
                x, x_hat, y, x_train.mean(axis=0), seen_classes, classifier))  # fmt: skip
            seen, unseen = np.isin(y, seen_classes), ~np.isin(y, seen_classes)
            if seen.any():  # the subspaces are fit on the seen classes: unseen are never right
                results["seen_nearest_subspace_accuracy"] = float(
                    subspace.nearest_subspace_accuracy(
                        z_train, y_train, z[seen], y[seen], num_classes,
                        config.eval.subspace_components,
                    )
                )  # fmt: skip
        if parallel.is_main_process():
            step = int(jax.device_get(state.step))
            out = os.path.join(workdir, "images")
            os.makedirs(out, exist_ok=True)
            figures.save_reconstruction_grid(
                os.path.join(out, f"{split}_reconstruction_{step}.png"), x, x_hat
            )
            if unseen is not None and unseen.any():
                figures.save_reconstruction_grid(
                    os.path.join(out, f"{split}_unseen_reconstruction_{step}.png"),
                    x[unseen], x_hat[unseen],
                )  # fmt: skip
            figures.save_cosine_heatmap(os.path.join(out, f"{split}_cosine_{step}.png"), z, y)
            figures.save_atom_grid(
                os.path.join(out, f"encoder_atoms_{step}.png"), jax.device_get(state.enc_params)
            )
        return results

    return evaluate


def first_stage_atoms(params: Any) -> dict[str, np.ndarray]:
    """The encoder's first-stage atoms (CSC dictionary or DCGAN kernel) as an image."""
    return {"encoder_atoms": atom_grid(figures.first_stage_dictionary(jax.device_get(params)))}


def to_model_images(images01: np.ndarray, image_shape: tuple[int, int, int]) -> np.ndarray:
    """[0, 1] NHWC images of any size/channels -> [-1, 1] images of ``image_shape`` (bilinear
    resize; grey <-> RGB by repetition / BT.601 luma)."""
    x = pixels.to_shape(jnp.asarray(images01, jnp.float32), image_shape)
    return np.asarray(pixels.symmetric_from_unit(jnp.clip(x, 0.0, 1.0)))


def transfer_reconstruction(
    workdir: str,
    dataset: str,
    *,
    data_dir: str | None = None,
    max_examples: int = 1000,
    batch_size: int = 250,
    classifier_workdir: str | None = None,
) -> dict[str, Any]:
    """Reconstructs the test split of another data set with a trained CTRL model.

    The images are resized / converted to the model's input shape, passed through ``g(f(·))``, and
    the PSNR / MSE are reported with the PSNR of the split's own mean image and the per-pixel
    spread of X̂ and X (:func:`reconstruction.collapse_metrics`), the SSIM beside the mean image's
    (:func:`fidelity.structural_metrics`) and, with ``classifier_workdir`` (a classifier run on
    ``dataset``), its accuracy on X̂ beside X (:func:`fidelity.classifier_metrics`); a grid of X
    beside X̂ is written to ``workdir/images/transfer_<dataset>.png``.
    """
    classifier = None
    if classifier_workdir:
        classifier = fidelity.load_classifier(classifier_workdir, data_dir=data_dir)
        if classifier.dataset.split("/")[0] != dataset.split("/")[0]:
            raise ValueError(
                f"classifier_workdir is a classifier of {classifier.dataset!r}, not of the "
                f"reconstructed data set {dataset!r}."
            )
    config, encoder, decoder, state, info = runs_ctrl.load_ctrl(workdir)
    batches = input_pipeline.eval_iterator(
        dataset, "test", data_dir=data_dir, global_batch_size=batch_size, validation_size=0
    )
    closed_loop = runs_ctrl.make_closed_loop(encoder, decoder)
    mesh = parallel.data_mesh()
    xs, x_hats, ys, seen = [], [], [], 0
    for batch in batches:
        keep = np.asarray(batch["mask"], bool)
        x = to_model_images(pixels.unit_from_uint8(batch["image"]), info.image_shape)
        _, x_hat, _ = closed_loop(state, parallel.shard_batch({"x": x}, mesh)["x"])
        xs.append(x[keep]), x_hats.append(np.asarray(jax.device_get(x_hat))[keep])
        ys.append(np.asarray(batch["label"])[keep])
        seen += int(keep.sum())
        if seen >= max_examples:
            break
    x, x_hat = np.concatenate(xs)[:max_examples], np.concatenate(x_hats)[:max_examples]
    y = np.concatenate(ys)[:max_examples]
    out = os.path.join(workdir, "images")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"transfer_{dataset.replace('/', '_')}.png")
    if parallel.is_main_process():
        figures.save_reconstruction_grid(path, x, x_hat)
    return {
        "trained_on": config.data.name,
        "reconstructed": dataset,
        "num_examples": len(x),
        # psnr_mean_image: the mean image of these same test images (the split's own mean)
        **reconstruction.collapse_metrics(x, x_hat),
        **fidelity.fidelity_metrics(x, x_hat, y, None, classifier),
        "mse": float(np.mean(reconstruction.mse(x, x_hat))),
        "grid": path,
    }
