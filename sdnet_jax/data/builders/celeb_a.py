"""The CelebA builder: the aligned images and the partition / attribute / landmark / identity
tables."""

from __future__ import annotations

import contextlib
import io
import os
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

import tensorflow_datasets as tfds
from PIL import Image

from sdnet_jax.data import datasets
from sdnet_jax.data.builders.common import KeyedExamples, missing

# --------------------------------------------------------------------------- CelebA

CELEBA_IMAGES_ZIP = "img_align_celeba.zip"
CELEBA_IMAGES_FOLDER = "img_align_celeba"
CELEBA_PARTITION = "list_eval_partition.txt"
CELEBA_ATTRIBUTES = "list_attr_celeba.txt"
CELEBA_LANDMARKS = "list_landmarks_align_celeba.txt"
CELEBA_IDENTITY = "identity_CelebA.txt"
_CELEBA_SPLITS = {"train": 0, "validation": 1, "test": 2}


def read_celeba_table(path: str, *, header: bool) -> tuple[list[str] | None, dict[str, list[int]]]:
    """``(column names, {file name: int values})`` of a CelebA list file.

    With ``header`` the file starts with the number of rows and a line of column names (the
    attribute and landmark lists); without it, rows start at the first line (identities).
    """
    with open(path) as f:
        lines = [line.split() for line in f.read().splitlines()]
    lines = [line for line in lines if line]
    keys = None
    if header:
        keys, lines = lines[1], lines[2:]
    return keys, {row[0]: [int(v) for v in row[1:]] for row in lines}


def rgb_jpeg(data: bytes) -> bytes:
    """``data`` unchanged if it is an RGB JPEG, else re-encoded as one."""
    with Image.open(io.BytesIO(data)) as image:
        if image.format == "JPEG" and image.mode == "RGB":
            return data
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="JPEG", quality=95)
        return buffer.getvalue()


@contextlib.contextmanager
def _celeba_image_reader(path: str) -> Iterator[Callable[[str], bytes]]:
    """``read(file name)`` → the JPEG bytes, from the zip or the extracted folder ``path``."""
    if os.path.isdir(path):

        def read_file(filename: str) -> bytes:
            with open(os.path.join(path, filename), "rb") as f:
                return f.read()

        yield read_file
        return
    with zipfile.ZipFile(path) as archive:
        members = {
            os.path.basename(name): name for name in archive.namelist() if not name.endswith("/")
        }

        def read_member(filename: str) -> bytes:
            if filename not in members:
                raise FileNotFoundError(f"{path} has no image {filename}")
            return archive.read(members[filename])

        yield read_member


_TfdsCelebA = tfds.builder_cls("celeb_a")


class CelebA(_TfdsCelebA, skip_registration=True):
    """``celeb_a`` (``train``, ``validation``, ``test``) from the aligned-and-cropped images and
    the CelebA list files."""

    name = "celeb_a"
    pkg_dir_path = _TfdsCelebA._get_pkg_dir_path()
    MANUAL_DOWNLOAD_INSTRUCTIONS = datasets.SPECS["celeb_a"].manual_files

    @staticmethod
    def find_inputs(manual_dir: str) -> dict[str, str]:
        """Paths of the inputs (``images``, ``partition``, ``attributes``, and ``landmarks`` /
        ``identity`` when present); raises ``FileNotFoundError`` naming a missing required one."""
        paths = {}
        folder = os.path.join(manual_dir, CELEBA_IMAGES_FOLDER)
        archive = os.path.join(manual_dir, CELEBA_IMAGES_ZIP)
        if os.path.isdir(folder):
            paths["images"] = folder
        elif os.path.isfile(archive):
            paths["images"] = archive
        else:
            raise missing("celeb_a", manual_dir, f"{CELEBA_IMAGES_ZIP} or {CELEBA_IMAGES_FOLDER}/")
        for key, filename, required in (
            ("partition", CELEBA_PARTITION, True),
            ("attributes", CELEBA_ATTRIBUTES, True),
            ("landmarks", CELEBA_LANDMARKS, False),
            ("identity", CELEBA_IDENTITY, False),
        ):
            path = os.path.join(manual_dir, filename)
            if os.path.isfile(path):
                paths[key] = path
            elif required:
                raise missing("celeb_a", manual_dir, filename)
        return paths

    def _split_generators(self, dl_manager: Any) -> dict[str, KeyedExamples]:
        paths = self.find_inputs(os.fspath(dl_manager.manual_dir))
        _, partition = read_celeba_table(paths["partition"], header=False)
        tables = {
            key: read_celeba_table(paths[key], header=key != "identity")
            for key in ("attributes", "landmarks", "identity")
            if key in paths
        }
        features = self.info.features
        expected = {
            "attributes": list(features["attributes"].keys()),
            "landmarks": list(features["landmarks"].keys()),
        }
        for key, names in expected.items():
            if key in tables and set(tables[key][0] or ()) != set(names):
                raise ValueError(f"celeb_a: the columns of {paths[key]} are not {names}")
        return {
            split: self._generate_examples(
                paths["images"],
                sorted(name for name, (split_id, *_) in partition.items() if split_id == file_id),
                tables,
            )
            for split, file_id in _CELEBA_SPLITS.items()
        }

    def _generate_examples(
        self,
        images_path: str,
        filenames: list[str],
        tables: dict[str, tuple[list[str] | None, dict[str, list[int]]]],
    ) -> KeyedExamples:
        features = self.info.features
        (identity_key,) = features["identity"].keys()
        missing_landmarks = dict.fromkeys(features["landmarks"].keys(), -1)

        def columns(key: str, filename: str) -> dict[str, int] | None:
            """``{column: value}`` of ``filename`` in table ``key``; ``None`` without the table."""
            if key not in tables:
                return None
            names, rows = tables[key]
            if filename not in rows:
                raise ValueError(f"celeb_a: no {key} row for {filename}")
            return dict(zip(names or [identity_key], rows[filename], strict=True))

        with _celeba_image_reader(images_path) as read:
            for filename in filenames:  # sorted, keyed by file name, as TFDS
                attributes = columns("attributes", filename)
                assert attributes is not None
                landmarks = columns("landmarks", filename)
                identity = columns("identity", filename)
                yield (
                    filename,
                    {
                        "image": rgb_jpeg(read(filename)),
                        "attributes": {k: v > 0 for k, v in attributes.items()},  # 1 / -1
                        "landmarks": missing_landmarks if landmarks is None else landmarks,
                        "identity": {identity_key: -1} if identity is None else identity,
                    },
                )
