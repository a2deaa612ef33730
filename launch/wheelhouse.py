"""Collect the wheels that install this project offline, for a given Python on manylinux x86_64.

    python launch/wheelhouse.py [--python-version 3.12] [--out wheelhouse] [--exclude-freeze FILE]
        [--extras ''] [--constraints constraints.txt]

(``make wheelhouse`` runs it.) The folder then installs the project on a machine without
internet that already has jax and jaxlib::

    pip install --no-index --find-links wheelhouse .

1. The requirements are ``pyproject.toml``'s dependencies (and ``--extras``) and its build
   backend, pinned by ``--constraints`` (the versions CI tested) where a pin exists.
2. Packages that PyPI ships only as source (``promise``, for TFDS) are built into wheels here
   first (they are pure Python), found by a dry-run resolution for this interpreter.
3. Everything is downloaded as wheels for the target (``--only-binary=:all:``, CPython
   ``--python-version``, the manylinux x86_64 tags), with the folder itself as a find-links
   source so the wheels of step 2 satisfy their dependents.
4. jax, jaxlib and what they require (numpy, scipy, ml_dtypes, opt_einsum: read from their wheels'
   metadata) are removed: the target brings its own jax, built for its accelerator.
5. ``--exclude-freeze FILE`` (a ``pip freeze`` of the target; a bare name means "installed, any
   version") removes the wheels of what the target has already, where its version satisfies
   every requirement on it in the folder and in ``pyproject.toml``; the others stay, with a note.

Prints what it kept and the folder's size. Needs pip and ``packaging`` (both in the project's
virtual environment) and access to the package index, once.
"""

from __future__ import annotations

import argparse
import email.parser
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Iterable

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANYLINUX = [f"manylinux_2_{n}_x86_64" for n in range(17, 40)]
MANYLINUX += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
TARGET_OWN = ("jax", "jaxlib")  # the target's own, built for its accelerator


def requirements(pyproject: str, extras: Iterable[str]) -> tuple[list[str], list[str]]:
    """``(the project's dependencies and those of extras, its build backend's requirements)``."""
    with open(pyproject, "rb") as f:
        project = tomllib.load(f)
    reqs = list(project["project"]["dependencies"])
    optional = project["project"].get("optional-dependencies", {})
    for extra in extras:
        if extra not in optional:
            raise SystemExit(f"unknown extra {extra!r}; pyproject.toml has {sorted(optional)}")
        reqs += optional[extra]
    return reqs, list(project["build-system"]["requires"])


def wheel_name(filename: str) -> str:
    """The canonical project name of a wheel file."""
    return canonicalize_name(os.path.basename(filename).split("-")[0])


def wheel_version(filename: str) -> Version:
    return Version(os.path.basename(filename).split("-")[1])


def wheel_requires(path: str) -> list[Requirement]:
    """The ``Requires-Dist`` entries of a wheel's metadata."""
    with zipfile.ZipFile(path) as whl:
        name = next(n for n in whl.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n))
        metadata = email.parser.Parser().parsestr(whl.read(name).decode())
    return [Requirement(line) for line in metadata.get_all("Requires-Dist") or []]


def target_environment(python_version: str) -> dict[str, str]:
    """The marker environment of CPython ``python_version`` on Linux x86_64."""
    env = default_environment()
    env.update(python_version=python_version, python_full_version=f"{python_version}.0",
               sys_platform="linux", platform_system="Linux", platform_machine="x86_64",
               os_name="posix", implementation_name="cpython",
               platform_python_implementation="CPython")  # fmt: skip
    return env


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def build_source_only(reqs: list[str], constraints: str, out: str) -> list[str]:
    """Builds wheels here for the packages of the resolution that the index has as source only;
    returns their file names."""
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "report.json")
        pip("install", "--quiet", "--dry-run", "--ignore-installed", "--report", report,
            "-c", constraints, *reqs)  # fmt: skip
        with open(report) as f:
            items = json.load(f)["install"]
    sources = [
        f"{item['metadata']['name']}=={item['metadata']['version']}"
        for item in items
        if not item["download_info"]["url"].endswith(".whl")
    ]
    if sources:
        pip("wheel", "--quiet", "--no-deps", "--wheel-dir", out, *sources)
    return sources


def download(reqs: list[str], constraints: str, python_version: str, out: str) -> None:
    platforms = [arg for tag in MANYLINUX for arg in ("--platform", tag)]
    pip("download", "--quiet", "--only-binary=:all:", "--python-version", python_version,
        "--implementation", "cp", *platforms, "--find-links", out, "-c", constraints,
        "--dest", out, *reqs)  # fmt: skip


def wheels(out: str) -> list[str]:
    return sorted(os.path.join(out, f) for f in os.listdir(out) if f.endswith(".whl"))


def remove_target_own(out: str, env: dict[str, str]) -> list[str]:
    """Removes jax, jaxlib and their requirements; returns the names removed."""
    own = {canonicalize_name(n) for n in TARGET_OWN}
    names = set(own)
    for path in wheels(out):
        if wheel_name(path) in own:
            names |= {canonicalize_name(r.name) for r in wheel_requires(path)
                      if r.marker is None or r.marker.evaluate(env)}  # fmt: skip
    removed = []
    for path in wheels(out):
        if wheel_name(path) in names:
            os.remove(path)
            removed.append(wheel_name(path))
    return sorted(removed)


def read_freeze(path: str) -> dict[str, Version | None]:
    """``name -> version`` of a ``pip freeze`` (``None``: a bare name, any version)."""
    found: dict[str, Version | None] = {}
    with open(path) as f:
        for line in f:
            line = line.split("#")[0].strip()
            if not line or line.startswith("-"):
                continue
            name, _, version = line.partition("==")
            try:
                found[canonicalize_name(name.split("@")[0].strip())] = (
                    Version(version.strip()) if version else None
                )
            except InvalidVersion:
                found[canonicalize_name(name)] = None
    return found


def exclude_installed(
    out: str, freeze: dict[str, Version | None], direct: list[str], build: list[str]
) -> tuple[list[str], list[str]]:
    """Removes the wheels of what ``freeze`` has, where its version satisfies every requirement
    on it (of the folder's wheels and of ``direct``); returns ``(removed, kept with a reason)``.
    The ``build`` requirements stay: pip builds the project in an isolated environment that sees
    only the folder, not what the target has installed."""
    keep = {canonicalize_name(Requirement(r).name) for r in build}
    specs: dict[str, list] = {}
    for req in [Requirement(r) for r in direct] + [
        r for path in wheels(out) for r in wheel_requires(path)
    ]:
        specs.setdefault(canonicalize_name(req.name), []).append(req.specifier)
    removed, kept = [], []
    for path in wheels(out):
        name = wheel_name(path)
        if name not in freeze or name in keep:
            continue
        version = freeze[name]
        unmet = [str(s) for s in specs.get(name, []) if version and not s.contains(version, True)]
        if unmet:
            kept.append(f"{name}: the target has {version}, needs {', '.join(unmet)}")
            continue
        os.remove(path)
        removed.append(name)
    return removed, kept


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python-version", default=f"{sys.version_info[0]}.{sys.version_info[1]}")
    parser.add_argument("--out", default=os.path.join(ROOT, "wheelhouse"))
    parser.add_argument("--exclude-freeze", default=None, help="a pip freeze of the target")
    parser.add_argument("--extras", default="", help="comma-separated extras to include")
    parser.add_argument("--constraints", default=os.path.join(ROOT, "constraints.txt"))
    args = parser.parse_args(argv)
    extras = [e for e in args.extras.split(",") if e]
    direct, build = requirements(os.path.join(ROOT, "pyproject.toml"), extras)
    reqs = direct + build
    os.makedirs(args.out, exist_ok=True)
    for path in wheels(args.out):  # a fresh set: no wheel of another Python or run stays
        os.remove(path)
    built = build_source_only(reqs, args.constraints, args.out)
    download(reqs, args.constraints, args.python_version, args.out)
    env = target_environment(args.python_version)
    removed = remove_target_own(args.out, env)
    print(f"built from source: {built or 'none'}; left to the target's jax: {removed}")
    if args.exclude_freeze:
        gone, kept = exclude_installed(args.out, read_freeze(args.exclude_freeze), direct, build)
        print(f"already on the target ({args.exclude_freeze}), removed: {gone}")
        for note in kept:
            print(f"kept (the target's version does not do): {note}")
    files = wheels(args.out)
    size = sum(os.path.getsize(f) for f in files)
    print(f"{args.out}: {len(files)} wheels for CPython {args.python_version}, "
          f"{size / 2**20:.1f} MiB")  # fmt: skip
    for path in files:
        print(f"  {os.path.getsize(path) / 2**20:7.2f} MiB  {os.path.basename(path)}")


if __name__ == "__main__":
    main()
