"""TFDS builders that prepare the supported data sets offline, from files the user already has.

Each builder subclasses TFDS's own registered builder (same name, version, configs, features and
split names, so ``tfds.data_source(<name>, data_dir=...)`` reads the result with TFDS's reader)
and replaces only the generation: it reads local archives instead of downloading, verifies no
registered checksum (Debian re-gzips Fashion-MNIST, for one), and encodes images with PIL, so it
runs without TensorFlow. Examples keep TFDS's keys, hence TFDS's on-disk order.

Inputs (``manual_dir``):

* ``fashion_mnist``: ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` (IDX files);
* ``cifar10`` / ``cifar100``: ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz`` or their
  extracted folders (the python pickles; TFDS itself reads the binary version);
* ``imagenet2012``: ``ILSVRC2012_img_train.tar`` and/or ``ILSVRC2012_img_val.tar`` (validation
  labels: the list shipped with TFDS). The unlabelled test archive is not prepared. Images that
  are not RGB or grey JPEGs (a few CMYK JPEGs, one PNG) are re-encoded as RGB JPEGs;
* ``cifar10_corrupted``: ``CIFAR-10-C.tar`` or its extracted ``CIFAR-10-C/`` folder;
* ``stl10``: ``stl10_binary.tar.gz`` or its extracted ``stl10_binary/`` folder (``train`` and
  ``test`` are required, ``unlabelled`` is prepared when ``unlabeled_X.bin`` is there; reading
  the ``.tar.gz`` decompresses it once per file, so extracting it first is faster);
* ``celeb_a``: ``img_align_celeba.zip`` (or the extracted ``img_align_celeba/`` folder),
  ``list_eval_partition.txt`` and ``list_attr_celeba.txt``; ``list_landmarks_align_celeba.txt``
  and ``identity_CelebA.txt`` are optional (TFDS's ``landmarks`` / ``identity`` features are
  written as -1 without them). All three TFDS splits (``train``, ``validation``, ``test``).

Use them through ``python -m sdnet_jax.data.prepare`` (:mod:`sdnet_jax.data.prepare`).
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from sdnet_jax.data.builders.celeb_a import CelebA
from sdnet_jax.data.builders.common import png_bytes
from sdnet_jax.data.builders.imagenet import Imagenet2012
from sdnet_jax.data.builders.small import (
    Cifar10,
    Cifar10Corrupted,
    Cifar100,
    FashionMnist,
    read_idx,
)
from sdnet_jax.data.builders.stl10 import Stl10

BUILDERS: dict[str, type[tfds.core.GeneratorBasedBuilder]] = {
    "fashion_mnist": FashionMnist,
    "cifar10": Cifar10,
    "cifar100": Cifar100,
    "imagenet2012": Imagenet2012,
    "cifar10_corrupted": Cifar10Corrupted,
    "stl10": Stl10,
    "celeb_a": CelebA,
}

__all__ = [
    "BUILDERS",
    "CelebA",
    "Cifar10",
    "Cifar10Corrupted",
    "Cifar100",
    "FashionMnist",
    "Imagenet2012",
    "Stl10",
    "png_bytes",
    "read_idx",
]
