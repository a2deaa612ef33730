"""Helpers the test modules share: the repository root and the experiment configs."""

from __future__ import annotations

import glob
import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(  # the classifier configs
    os.path.basename(p)[:-3]
    for p in glob.glob(os.path.join(ROOT, "configs", "*.py"))
    if not os.path.basename(p).startswith(("__", "classifier_base", "ctrl"))
)
CTRL_CONFIGS = sorted(
    os.path.basename(p)[:-3]
    for p in glob.glob(os.path.join(ROOT, "configs", "ctrl_*.py"))
    if not p.endswith("ctrl_base.py")
)


def load_config(name: str, arg: str | None = "smoke"):
    """``configs/<name>.py``'s ``get_config(arg)`` (default: its tiny 'smoke' form)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def digits_smoke(**overrides):
    """The digits SDNet smoke config with dotted-path overrides (``{"model.width": 4}``)."""
    config = load_config("digits_sdnet")
    for key, value in overrides.items():
        target = config
        *path, leaf = key.split(".")
        for part in path:
            target = target[part]
        target[leaf] = value
    return config
