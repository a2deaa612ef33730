"""``launch/wheelhouse.py``'s decisions on a folder of stand-in wheels (no index needed): what the
target's jax brings is removed, what the target has is removed only where its version satisfies
every requirement on it, and the build backend always stays."""

from __future__ import annotations

import importlib.util
import os
import zipfile

import pytest

from tests.helpers import ROOT

spec = importlib.util.spec_from_file_location(
    "wheelhouse", os.path.join(ROOT, "launch", "wheelhouse.py")
)
wheelhouse = importlib.util.module_from_spec(spec)
spec.loader.exec_module(wheelhouse)

ENV = wheelhouse.target_environment("3.12")


def _wheel(folder, name: str, version: str, requires: tuple[str, ...] = ()) -> str:
    """A stand-in wheel: just its ``METADATA``."""
    path = os.path.join(folder, f"{name}-{version}-py3-none-any.whl")
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {r}" for r in requires]
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr(f"{name}-{version}.dist-info/METADATA", "\n".join(lines) + "\n")
    return path


@pytest.fixture
def folder(tmp_path):
    _wheel(tmp_path, "jax", "0.10.2", ("jaxlib<=0.10.2", "numpy>=2", "ml_dtypes>=0.5",
                                       "opt_einsum", "scipy>=1.13",
                                       "jax-cuda12-plugin; extra == 'cuda12'"))  # fmt: skip
    _wheel(tmp_path, "jaxlib", "0.10.2", ("scipy>=1.13", "numpy>=2", "ml_dtypes>=0.5"))
    for name in ("numpy", "scipy", "ml_dtypes", "opt_einsum"):
        _wheel(tmp_path, name, "2.4.6")
    _wheel(tmp_path, "flax", "0.12.8", ("jax>=0.8", "msgpack", "rich>=11.1"))
    _wheel(tmp_path, "msgpack", "1.2.4")
    _wheel(tmp_path, "rich", "15.0.0")
    _wheel(tmp_path, "tensorflow_datasets", "4.9.10", ("protobuf>=3.20", "promise"))
    _wheel(tmp_path, "protobuf", "7.36.2")
    _wheel(tmp_path, "promise", "2.3")
    _wheel(tmp_path, "setuptools", "80.0.0")
    return tmp_path


def _names(folder) -> list[str]:
    return sorted(wheelhouse.wheel_name(p) for p in wheelhouse.wheels(folder))


def test_the_targets_jax_and_its_requirements_are_left_out(folder):
    removed = wheelhouse.remove_target_own(folder, ENV)
    assert removed == ["jax", "jaxlib", "ml-dtypes", "numpy", "opt-einsum", "scipy"]
    assert "jax-cuda12-plugin" not in removed  # an extra's requirement is not jax's own
    assert _names(folder) == ["flax", "msgpack", "promise", "protobuf", "rich", "setuptools",
                              "tensorflow-datasets"]  # fmt: skip


def test_what_the_target_has_is_left_out_when_its_version_does(folder, tmp_path_factory):
    wheelhouse.remove_target_own(folder, ENV)
    freeze = tmp_path_factory.mktemp("target") / "freeze.txt"
    freeze.write_text(
        "# the target's pip freeze\nflax==0.12.8\nrich==10.0\nmsgpack\nProtobuf==4.25.0\n"
        "setuptools==80.0.0\npromise @ file:///somewhere\n-e git+https://x/y#egg=z\n"
    )
    found = wheelhouse.read_freeze(os.fspath(freeze))
    assert found["msgpack"] is None and str(found["protobuf"]) == "4.25.0"
    removed, kept = wheelhouse.exclude_installed(
        folder, found, ["flax>=0.10", "protobuf>=5"], ["setuptools>=68"]
    )
    # rich 10.0 < flax's rich>=11.1 and protobuf 4.25 < our protobuf>=5: their wheels stay;
    # setuptools stays for the isolated build whatever the target has
    assert removed == ["flax", "msgpack", "promise"]
    assert kept == ["protobuf: the target has 4.25.0, needs >=5",
                    "rich: the target has 10.0, needs >=11.1"]  # fmt: skip
    assert _names(folder) == ["protobuf", "rich", "setuptools", "tensorflow-datasets"]


def test_requirements_come_from_pyproject(tmp_path):
    direct, build = wheelhouse.requirements(os.path.join(ROOT, "pyproject.toml"), ["tf"])
    assert "tensorflow-cpu" in direct and any(r.startswith("flax") for r in direct)
    assert build == ["setuptools>=68"]
    with pytest.raises(SystemExit, match="unknown extra"):
        wheelhouse.requirements(os.path.join(ROOT, "pyproject.toml"), ["nope"])
