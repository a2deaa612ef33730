"""Prepare a data set offline, in TFDS's array_record format or as decoded arrays, from files you
already have.

    python -m sdnet_jax.data.prepare <name> --manual_dir=DIR [--data_dir=DIR] [--format=arrays]

``<name>`` is ``fashion_mnist``, ``cifar10``, ``cifar100``, ``imagenet2012``, ``stl10``,
``celeb_a``, ``cifar10_corrupted/<corruption>_<severity>`` or ``cifar10_corrupted`` (all 95
configs). Nothing is downloaded and TensorFlow is not needed (see :mod:`sdnet_jax.data.builders`
for what ``--manual_dir`` must hold). The result is what ``tfds.data_source(<name>,
data_dir=DIR)`` (and so :mod:`sdnet_jax.data.input_pipeline`) reads:
``DIR/<name>[/<config>]/<version>/``, with TFDS's version, features and split names. An already
prepared data set is left as it is.

``--format=arrays`` then decodes its splits into ``DIR/<name>[/<config>]/arrays/<split>.npz``
(:mod:`sdnet_jax.data.datasets`: uint8 images and labels, read with NumPy alone and preferred
over the TFDS files); ``--manual_dir`` is needed only when the TFDS files are not prepared yet.
Copy that ``arrays`` folder alone to a machine that has no data (Fashion-MNIST: 30 MB).

Examples::

    python -m sdnet_jax.data.prepare fashion_mnist \\
        --manual_dir=/usr/share/datasets/fashion-mnist --data_dir=~/tensorflow_datasets
    python -m sdnet_jax.data.prepare cifar10 --manual_dir=~/Downloads --data_dir=~/tensorflow_datasets
    python -m sdnet_jax.data.prepare stl10 --manual_dir=~/Downloads --data_dir=~/tensorflow_datasets
    python -m sdnet_jax.data.prepare celeb_a --manual_dir=~/celeba --data_dir=~/tensorflow_datasets
    python -m sdnet_jax.data.prepare fashion_mnist --format=arrays --data_dir=~/tensorflow_datasets
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

import tensorflow_datasets as tfds

from sdnet_jax.data import builders, datasets


def prepare(name: str, *, manual_dir: str, data_dir: str | None = None) -> list[str]:
    """Builds ``name`` into ``data_dir`` from ``manual_dir``; returns the prepared directories.

    Raises ``ValueError`` for a name that cannot be prepared and ``FileNotFoundError`` (before
    writing anything) when ``manual_dir`` lacks the inputs.
    """
    base, config = datasets.parse_name(name)
    if base not in builders.BUILDERS:
        raise ValueError(f"{name!r} is embedded in the package: there is nothing to prepare")
    builder_cls = builders.BUILDERS[base]
    manual_dir = os.path.expanduser(manual_dir)
    if not os.path.isdir(manual_dir):
        raise FileNotFoundError(
            f"manual_dir {manual_dir!r} is not a directory; it must hold "
            f"{datasets.SPECS[base].manual_files}"
        )
    builder_cls.find_inputs(manual_dir)  # fail early, with the name of a missing file
    data_dir = datasets.resolved_data_dir(
        None if data_dir is None else os.path.expanduser(data_dir)
    )
    if config is not None:
        configs: Sequence[str | None] = [config]
    elif builder_cls.BUILDER_CONFIGS:
        configs = [c.name for c in builder_cls.BUILDER_CONFIGS]
    else:
        configs = [None]
    download_config = tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False)
    prepared = []
    for config_name in configs:
        builder = builder_cls(config=config_name, data_dir=data_dir, file_format="array_record")
        builder.download_and_prepare(download_config=download_config)
        prepared.append(os.fspath(builder.data_dir))
    return prepared


FORMATS = ("tfds", "arrays")


def prepare_arrays(name: str, *, data_dir: str | None = None, manual_dir: str | None = None) -> str:
    """Writes the decoded raw splits of ``name`` (train, if any, and test, by their TFDS names) to
    :func:`datasets.arrays_dir`; returns that folder. Reads the TFDS files in ``data_dir``,
    preparing them from ``manual_dir`` first when given (else a missing data set is a
    :class:`datasets.DatasetNotFoundError` that says how)."""
    base, config = datasets.parse_name(name)
    if base == "cifar10_corrupted" and config is None:
        raise ValueError("name one config, cifar10_corrupted/<corruption>_<severity>, for arrays")
    data_dir = datasets.resolved_data_dir(
        None if data_dir is None else os.path.expanduser(data_dir)
    )
    if manual_dir is not None:
        prepare(name, manual_dir=manual_dir, data_dir=data_dir)
    splits = datasets.open_tfds_splits(name, data_dir)
    folder = datasets.arrays_dir(name, data_dir)
    for split, source in (
        (splits.spec.train_split, splits.train),
        (splits.spec.test_split, splits.test),
    ):
        if source is not None:
            datasets.write_arrays(source, os.path.join(folder, f"{split}.npz"))
    return folder


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point (``argv`` without the program name; ``None``: ``sys.argv``)."""
    parser = argparse.ArgumentParser(
        prog="python -m sdnet_jax.data.prepare",
        description="Prepare a TFDS data set offline (array_record) from local files.",
    )
    names = [n for n in datasets.SUPPORTED if n in builders.BUILDERS]
    parser.add_argument(
        "name", help=f"one of {', '.join(names)}; cifar10_corrupted/<config> for one config"
    )
    parser.add_argument("--manual_dir", default=None, help="folder holding the source files")
    parser.add_argument(
        "--data_dir",
        default=None,
        help="TFDS data folder to write to (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)",
    )
    parser.add_argument(
        "--format",
        default="tfds",
        choices=FORMATS,
        help="tfds: array_record files; arrays: also their decoded splits as .npz (NumPy only)",
    )
    args = parser.parse_args(argv)
    if args.format == "tfds" and args.manual_dir is None:
        parser.error("--manual_dir is required (the folder holding the source files)")
    try:
        if args.format == "arrays":
            prepared = [
                prepare_arrays(args.name, data_dir=args.data_dir, manual_dir=args.manual_dir)
            ]
        else:
            prepared = prepare(args.name, manual_dir=args.manual_dir, data_dir=args.data_dir)
    except (ValueError, FileNotFoundError) as error:
        parser.error(" ".join(str(error).split()))
    for path in prepared:
        print(f"prepared {path}")


if __name__ == "__main__":
    main()
