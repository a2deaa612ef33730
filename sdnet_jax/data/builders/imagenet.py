"""The ImageNet 2012 builder: ``ILSVRC2012_img_{train,val}.tar``."""

from __future__ import annotations

import io
import os
import tarfile
from typing import Any

import tensorflow_datasets as tfds
from PIL import Image

from sdnet_jax.data import datasets
from sdnet_jax.data.builders.common import (
    Example,
    KeyedExamples,
    missing,
    tar_files,
)

# --------------------------------------------------------------------------- ImageNet 2012

IMAGENET_TRAIN_TAR = "ILSVRC2012_img_train.tar"
IMAGENET_VAL_TAR = "ILSVRC2012_img_val.tar"


def rgb_or_grey_jpeg(data: bytes) -> bytes:
    """``data`` unchanged if it is an RGB or grey JPEG, else re-encoded as an RGB JPEG."""
    with Image.open(io.BytesIO(data)) as image:
        if image.format == "JPEG" and image.mode in ("RGB", "L"):
            return data
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="JPEG", quality=95)
        return buffer.getvalue()


def imagenet_validation_labels(val_tar: str) -> dict[str, str]:
    """File name → synset of the validation images, from TFDS's label list (one synset per image,
    in the sorted order of the file names)."""
    labels_path = tfds.core.tfds_path("datasets/imagenet2012/validation_labels.txt")
    labels = labels_path.read_text().strip().splitlines()
    with tarfile.open(val_tar, "r:") as tar:
        names = sorted(os.path.basename(n) for n in tar.getnames())
    if len(names) > len(labels):
        raise ValueError(f"{val_tar} has {len(names)} files but there are {len(labels)} labels")
    return dict(zip(names, labels, strict=False))


_TfdsImagenet = tfds.builder_cls("imagenet2012")


class Imagenet2012(_TfdsImagenet, skip_registration=True):
    """``imagenet2012`` (``train``, ``validation``) from the ILSVRC2012 archives."""

    name = "imagenet2012"
    pkg_dir_path = _TfdsImagenet._get_pkg_dir_path()
    MANUAL_DOWNLOAD_INSTRUCTIONS = datasets.SPECS["imagenet2012"].manual_files

    @staticmethod
    def find_inputs(manual_dir: str) -> dict[str, str]:
        """The archives present (``train`` / ``validation``); raises if there is neither."""
        paths = {
            split: os.path.join(manual_dir, filename)
            for split, filename in (("train", IMAGENET_TRAIN_TAR), ("validation", IMAGENET_VAL_TAR))
        }
        paths = {split: path for split, path in paths.items() if os.path.isfile(path)}
        if not paths:
            raise missing("imagenet2012", manual_dir, f"{IMAGENET_TRAIN_TAR} or {IMAGENET_VAL_TAR}")
        return paths

    def _split_generators(self, dl_manager: Any) -> dict[str, KeyedExamples]:
        paths = self.find_inputs(os.fspath(dl_manager.manual_dir))
        generators = {}
        if "train" in paths:
            generators["train"] = self._generate_examples(paths["train"], None)
        if "validation" in paths:
            labels = imagenet_validation_labels(paths["validation"])
            generators["validation"] = self._generate_examples(paths["validation"], labels)
        return generators

    def _generate_examples(
        self, path: str, validation_labels: dict[str, str] | None
    ) -> KeyedExamples:
        for filename, data in tar_files(path):
            if validation_labels is not None:  # a flat archive of JPEGs
                yield filename, self._record(filename, data, validation_labels[filename])
                continue
            synset = filename.removesuffix(".tar")  # the train archive holds one tar per synset
            for image_name, image in tar_files(io.BytesIO(data)):
                yield image_name, self._record(image_name, image, synset)

    @staticmethod
    def _record(filename: str, data: bytes, synset: str) -> Example:
        return {"file_name": filename, "image": rgb_or_grey_jpeg(data), "label": synset}
