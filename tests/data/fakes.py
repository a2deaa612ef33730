"""Small fake source files, laid out like the real ones, for the prepare / round-trip tests."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
import zipfile

import numpy as np
from PIL import Image


def idx_bytes(array: np.ndarray) -> bytes:
    """A uint8 IDX file (magic 0x0000 08 ndim, big-endian dims, data)."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_fashion_mnist(
    manual_dir: str, num_train: int = 60, num_test: int = 20, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Debian-style files: IDX re-gzipped (level 9, other header than upstream's). Returns the
    ``{'train': (images, labels), 'test': ...}`` written."""
    rng = np.random.default_rng(seed)
    written = {}
    for split, prefix, count in (("train", "train", num_train), ("test", "t10k", num_test)):
        images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        labels = (np.arange(count) % 10).astype(np.uint8)
        for kind, suffix, array in (("images", "idx3", images), ("labels", "idx1", labels)):
            path = os.path.join(manual_dir, f"{prefix}-{kind}-{suffix}-ubyte.gz")
            with open(path, "wb") as f:
                f.write(gzip.compress(idx_bytes(array), compresslevel=9, mtime=0))
        written[split] = (images, labels.astype(np.int64))
    return written


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_cifar10(
    manual_dir: str, per_batch: int = 4, num_test: int = 6, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``cifar-10-python.tar.gz`` with 5 train batches of ``per_batch`` images and a test batch."""
    rng = np.random.default_rng(seed)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer"]
    names += [b"dog", b"frog", b"horse", b"ship", b"truck"]
    members = {"batches.meta": {b"label_names": names, b"num_vis": 3072}}
    written: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"train": [], "test": []}
    for split, member, count in [("train", f"data_batch_{i}", per_batch) for i in range(1, 6)] + [
        ("test", "test_batch", num_test)
    ]:
        images = rng.integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, size=count)
        flat = images.transpose(0, 3, 1, 2).reshape(count, 3072)  # channel-major rows
        members[member] = {b"data": flat, b"labels": [int(x) for x in labels]}
        written[split].append((images, labels))
    with tarfile.open(os.path.join(manual_dir, "cifar-10-python.tar.gz"), "w:gz") as tar:
        for member, content in members.items():
            _add_bytes(tar, f"cifar-10-batches-py/{member}", pickle.dumps(content, protocol=2))
    return {
        split: (np.concatenate([i for i, _ in parts]), np.concatenate([lab for _, lab in parts]))
        for split, parts in written.items()
    }


def write_cifar100(
    manual_dir: str, num_train: int = 10, num_test: int = 5, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``cifar-100-python.tar.gz`` (``train``, ``test``, ``meta`` pickles). Returns
    ``{'train': (images, fine labels, coarse labels), 'test': ...}``."""
    rng = np.random.default_rng(seed)
    meta = {
        b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
    }
    members: dict[str, dict] = {"meta": meta}
    written = {}
    for split, count in (("train", num_train), ("test", num_test)):
        images = rng.integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8)
        fine, coarse = rng.integers(0, 100, size=count), rng.integers(0, 20, size=count)
        members[split] = {
            b"data": images.transpose(0, 3, 1, 2).reshape(count, 3072),
            b"fine_labels": [int(x) for x in fine],
            b"coarse_labels": [int(x) for x in coarse],
        }
        written[split] = (images, fine, coarse)
    with tarfile.open(os.path.join(manual_dir, "cifar-100-python.tar.gz"), "w:gz") as tar:
        for member, content in members.items():
            _add_bytes(tar, f"cifar-100-python/{member}", pickle.dumps(content, protocol=2))
    return written


def jpeg_bytes(image: np.ndarray, mode: str = "RGB", image_format: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).convert(mode).save(buffer, format=image_format, quality=90)
    return buffer.getvalue()


def write_imagenet(manual_dir: str, seed: int = 0) -> dict[str, list[tuple[str, str]]]:
    """Tiny ``ILSVRC2012_img_{train,val}.tar``: 2 synsets × 2 train images (one a PNG named
    .JPEG, one a CMYK JPEG, as in the real archive) and 3 validation images. Returns the
    ``(file name, synset)`` pairs per split."""
    rng = np.random.default_rng(seed)

    def image() -> np.ndarray:
        shape = (int(rng.integers(20, 40)), int(rng.integers(20, 40)), 3)
        return rng.integers(0, 256, size=shape, dtype=np.uint8)

    train = {
        "n01440764": [
            ("n01440764_1.JPEG", jpeg_bytes(image())),
            ("n01440764_2.JPEG", jpeg_bytes(image(), image_format="PNG")),
        ],
        "n01443537": [
            ("n01443537_1.JPEG", jpeg_bytes(image(), mode="CMYK")),
            ("n01443537_2.JPEG", jpeg_bytes(image(), mode="L")),
        ],
    }
    with tarfile.open(os.path.join(manual_dir, "ILSVRC2012_img_train.tar"), "w") as outer:
        for synset, files in train.items():
            inner_bytes = io.BytesIO()
            with tarfile.open(fileobj=inner_bytes, mode="w") as inner:
                for filename, data in files:
                    _add_bytes(inner, filename, data)
            _add_bytes(outer, f"{synset}.tar", inner_bytes.getvalue())
    # TFDS's validation_labels.txt starts with n01751748, n09193705, n02105855.
    validation = [f"ILSVRC2012_val_{i:08d}.JPEG" for i in (3, 1, 2)]  # archive order != sorted
    with tarfile.open(os.path.join(manual_dir, "ILSVRC2012_img_val.tar"), "w") as tar:
        for filename in validation:
            _add_bytes(tar, filename, jpeg_bytes(image()))
    val_labels = dict(zip(sorted(validation), ["n01751748", "n09193705", "n02105855"], strict=True))
    return {
        "train": [(name, synset) for synset, files in train.items() for name, _ in files],
        "validation": [(name, val_labels[name]) for name in validation],
    }


def write_cifar10_corrupted(manual_dir: str, num_images: int = 6, seed: int = 0) -> np.ndarray:
    """An extracted ``CIFAR-10-C/`` folder with ``labels.npy`` and ``gaussian_noise.npy`` (5
    severities of ``num_images``). Returns the images, shape (5, num_images, 32, 32, 3)."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(manual_dir, "CIFAR-10-C")
    os.makedirs(folder)
    labels = np.tile(rng.integers(0, 10, size=num_images).astype(np.uint8), 5)
    images = rng.integers(0, 256, size=(5 * num_images, 32, 32, 3), dtype=np.uint8)
    np.save(os.path.join(folder, "labels.npy"), labels)
    np.save(os.path.join(folder, "gaussian_noise.npy"), images)
    return images.reshape(5, num_images, 32, 32, 3)


def write_stl10(
    manual_dir: str,
    num_train: int = 6,
    num_test: int = 4,
    num_unlabelled: int = 3,
    archive: bool = True,
    seed: int = 0,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``stl10_binary.tar.gz`` (or the extracted ``stl10_binary/`` folder): column-major
    ``(N, 3, 96, 96)`` uint8 images, labels 1..10, ``class_names.txt``. Returns the
    ``{'train' / 'test' / 'unlabelled': (images (N, 96, 96, 3), 0-based labels or -1)}`` written."""
    rng = np.random.default_rng(seed)
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    members = {"class_names.txt": ("\n".join(names) + "\n").encode()}
    written = {}
    for split, stem, count in (
        ("train", "train", num_train),
        ("test", "test", num_test),
        ("unlabelled", "unlabeled", num_unlabelled),
    ):
        images = rng.integers(0, 256, size=(count, 96, 96, 3), dtype=np.uint8)
        # image[row, col, ch] = raw[ch, col, row] (column-major per channel)
        members[f"{stem}_X.bin"] = images.transpose(0, 3, 2, 1).tobytes()
        labels = np.full(count, -1, dtype=np.int64)
        if split != "unlabelled":
            labels = rng.integers(0, 10, size=count)
            members[f"{stem}_y.bin"] = (labels + 1).astype(np.uint8).tobytes()
        written[split] = (images, labels)
    if archive:
        with tarfile.open(os.path.join(manual_dir, "stl10_binary.tar.gz"), "w:gz") as tar:
            for member, data in members.items():
                _add_bytes(tar, f"stl10_binary/{member}", data)
    else:
        folder = os.path.join(manual_dir, "stl10_binary")
        os.makedirs(folder)
        for member, data in members.items():
            with open(os.path.join(folder, member), "wb") as f:
                f.write(data)
    return written


CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee "
    "Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes "
    "No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling "
    "Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace "
    "Wearing_Necktie Young"
).split()
CELEBA_LANDMARKS = (
    "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y "
    "rightmouth_x rightmouth_y"
).split()


def write_celeb_a(
    manual_dir: str, partition: tuple[int, ...] = (0, 0, 0, 0, 1, 2, 2, 0), landmarks: bool = True
) -> dict[str, dict[str, object]]:
    """``img_align_celeba.zip`` (218 x 178 JPEGs, image 3 a grey one), ``list_eval_partition.txt``,
    ``list_attr_celeba.txt`` (the real layout: count, header, ±1 columns, CRLF) and, with
    ``landmarks``, ``list_landmarks_align_celeba.txt`` and ``identity_CelebA.txt``. Image ``i``'s
    attributes are the bits of ``i + 1`` (unique rows), but ``Male`` is ``i`` odd. Returns
    ``{file name: {'split', 'image' (the decoded JPEG), 'attributes', 'landmarks', 'identity'}}``
    (-1 for the landmarks / identity not written)."""
    rng = np.random.default_rng(0)
    split_names = {0: "train", 1: "validation", 2: "test"}
    written: dict[str, dict[str, object]] = {}
    attr_lines = [str(len(partition)), " ".join(CELEBA_ATTRIBUTES)]
    landmark_lines = [str(len(partition)), " ".join(CELEBA_LANDMARKS)]
    identity_lines, partition_lines = [], []
    with zipfile.ZipFile(os.path.join(manual_dir, "img_align_celeba.zip"), "w") as archive:
        for i, split in enumerate(partition):
            name = f"{i + 1:06d}.jpg"
            image = rng.integers(0, 256, size=(218, 178, 3), dtype=np.uint8)
            data = jpeg_bytes(image, mode="L" if i == 2 else "RGB")
            archive.writestr(f"img_align_celeba/{name}", data)
            attributes = {k: bool((i + 1) >> b & 1) for b, k in enumerate(CELEBA_ATTRIBUTES)}
            attributes["Male"] = bool(i % 2)
            marks = {
                k: int(v) for k, v in zip(CELEBA_LANDMARKS, rng.integers(0, 178, 10), strict=True)
            }
            identity = 100 + i
            signs = ["1" if attributes[k] else "-1" for k in CELEBA_ATTRIBUTES]
            attr_lines.append(f"{name} " + " ".join(f"{v:>2}" for v in signs))
            landmark_lines.append(
                f"{name}   " + "   ".join(str(marks[k]) for k in CELEBA_LANDMARKS)
            )
            identity_lines.append(f"{name} {identity}")
            partition_lines.append(f"{name} {split}")
            decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
            written[name] = {
                "split": split_names[split],
                "image": decoded,
                "attributes": attributes,
                "landmarks": marks if landmarks else dict.fromkeys(CELEBA_LANDMARKS, -1),
                "identity": identity if landmarks else -1,
            }
    files = {"list_eval_partition.txt": partition_lines, "list_attr_celeba.txt": attr_lines}
    if landmarks:
        files["list_landmarks_align_celeba.txt"] = landmark_lines
        files["identity_CelebA.txt"] = identity_lines
    for filename, lines in files.items():
        with open(os.path.join(manual_dir, filename), "w") as f:
            f.write("\r\n".join(lines) + "\r\n")  # the real files have Windows line ends
    return written


def multiset(images: np.ndarray, labels: np.ndarray) -> list[bytes]:
    """Order-free fingerprint of (image, label) pairs (TFDS shuffles examples on disk)."""
    images = np.asarray(images, dtype=np.uint8)
    return sorted(
        image.tobytes() + int(label).to_bytes(2, "little")
        for image, label in zip(images, labels, strict=True)
    )
