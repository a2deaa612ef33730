"""Fixtures of the data tests: small fake data sets prepared once per session with the real
``prepare`` command (array_record, read back through ``tfds.data_source``)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import pytest

from sdnet_jax.data import prepare
from tests.data import fakes


@dataclasses.dataclass(frozen=True)
class Prepared:
    data_dir: str
    written: Any  # what the fake writer returned


@pytest.fixture(scope="session")
def fashion_mnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    manual_dir = tmp_path_factory.mktemp("fashion_mnist_manual")
    data_dir = tmp_path_factory.mktemp("fashion_mnist_data")
    written = fakes.write_fashion_mnist(os.fspath(manual_dir))
    prepare.main(["fashion_mnist", f"--manual_dir={manual_dir}", f"--data_dir={data_dir}"])
    return Prepared(os.fspath(data_dir), written)


@pytest.fixture(scope="session")
def cifar10_dir(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    manual_dir = tmp_path_factory.mktemp("cifar10_manual")
    data_dir = tmp_path_factory.mktemp("cifar10_data")
    written = fakes.write_cifar10(os.fspath(manual_dir))
    prepare.main(["cifar10", f"--manual_dir={manual_dir}", f"--data_dir={data_dir}"])
    return Prepared(os.fspath(data_dir), written)
