"""Flax modules: the CSC layer, the ResNet / SDNet classifiers with a name registry, and the
CSC-CTRL / DCGAN-style encoder-decoder pairs (``get_ctrl_models``)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn

from sdnet_jax.models import resnet
from sdnet_jax.models.csc import (
    CSC_OPTIONS,
    CSCConv,
    csc_layer,
    normalized_init,
    project_dictionaries,
)
from sdnet_jax.models.ctrl import (
    CTRL_MODELS,
    CSCDecoder,
    CSCEncoder,
    DCGANDecoder,
    DCGANEncoder,
    get_ctrl_models,
)
from sdnet_jax.models.resnet import BasicBlock, ResNet

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
    return MODELS[name](num_classes=num_classes, stem=stem, csc=csc_layer(csc), **kw)


__all__ = [
    "CSC_OPTIONS",
    "CTRL_MODELS",
    "MODELS",
    "BasicBlock",
    "CSCConv",
    "CSCDecoder",
    "CSCEncoder",
    "DCGANDecoder",
    "DCGANEncoder",
    "ResNet",
    "csc_layer",
    "get_ctrl_models",
    "get_model",
    "normalized_init",
    "project_dictionaries",
]
