"""Flax modules: the CSC layer, and the ResNet / SDNet classifiers with a name registry."""

from __future__ import annotations

from functools import partial
from typing import Any

import flax.linen as nn

from sdnet_jax.models import resnet
from sdnet_jax.models.csc import CSCConv, normalized_init, project_dictionaries
from sdnet_jax.models.resnet import BasicBlock, ResNet

CSC_OPTIONS = (
    "lam",
    "num_iters",
    "method",
    "nonneg",
    "mu",
    "grad",
    "power_iters",
    "init_power_iters",
    "step_scale",
)

MODELS = {
    "resnet18": resnet.ResNet18,
    "resnet34": resnet.ResNet34,
    "sdnet18": resnet.SDNet18,
    "sdnet34": resnet.SDNet34,
    "sdnet18_all": resnet.SDNet18All,
    "sdnet34_all": resnet.SDNet34All,
    "sdnet18_all_noshortcut": resnet.SDNet18AllNoShortcut,
    "sdnet34_all_noshortcut": resnet.SDNet34AllNoShortcut,
}


def get_model(
    name: str, *, num_classes: int, stem: str = "cifar", csc: dict[str, Any] | None = None, **kw
) -> nn.Module:
    """Builds a registered classifier.

    Args:
      name: one of ``MODELS`` (``resnet18``, ``sdnet18``, ``sdnet18_all``, ...).
      num_classes: classifier outputs.
      stem: ``'cifar'`` or ``'imagenet'``.
      csc: options of every CSC layer (keys in ``CSC_OPTIONS``, e.g. ``{'lam': 0.1, 'num_iters': 2}``).
      **kw: other :class:`ResNet` attributes (``width``, ``dtype``).

    Raises:
      ValueError: for an unknown name or CSC option, naming the valid ones.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {sorted(MODELS)}.")
    csc = dict(csc or {})
    unknown = sorted(set(csc) - set(CSC_OPTIONS))
    if unknown:
        raise ValueError(f"unknown CSC option(s) {unknown}; valid: {list(CSC_OPTIONS)}.")
    return MODELS[name](num_classes=num_classes, stem=stem, csc=partial(CSCConv, **csc), **kw)


__all__ = [
    "CSC_OPTIONS",
    "MODELS",
    "BasicBlock",
    "CSCConv",
    "ResNet",
    "get_model",
    "normalized_init",
    "project_dictionaries",
]
