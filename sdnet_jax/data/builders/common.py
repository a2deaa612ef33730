"""What the builders share: example types, PNG encoding, the missing-file error, tar reading."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator
from typing import Any

import numpy as np
from PIL import Image

Example = dict[str, Any]
KeyedExamples = Iterator[tuple[str | int, Example]]


def png_bytes(image: np.ndarray) -> bytes:
    """Lossless PNG encoding of a uint8 ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` image."""
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="png")
    return buffer.getvalue()


def missing(name: str, manual_dir: str, what: str) -> FileNotFoundError:
    return FileNotFoundError(f"{name}: {what} not found in manual_dir {manual_dir!r}")


def tar_files(path_or_fileobj: str | io.BytesIO) -> Iterator[tuple[str, bytes]]:
    """``(base name, bytes)`` of the regular files of a tar, streamed in archive order."""
    kwargs = (
        {"fileobj": path_or_fileobj}
        if isinstance(path_or_fileobj, io.BytesIO)
        else {"name": path_or_fileobj}
    )
    with tarfile.open(mode="r|", **kwargs) as tar:
        for member in tar:
            f = tar.extractfile(member) if member.isfile() else None
            if f is not None:
                yield os.path.basename(member.name), f.read()
