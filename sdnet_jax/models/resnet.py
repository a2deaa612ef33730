"""ResNet-18/34 and SDNet-18/34 (CSC stem) and SDNet-18/34-All (CSC everywhere), one class.

Follows SDNet's public code (PyTorch ``torchvision``-style ResNet with BasicBlocks):

* ``ResNet``: stem conv → BN → ReLU (ImageNet: 7×7/2 conv, BN, ReLU, 3×3/2 max-pool; CIFAR: 3×3/1
  conv, BN, ReLU), four stages of BasicBlocks (64/128/256/512 × ``width / 64``, strides 1/2/2/2),
  global average pool, dense.
* ``csc_stem``: the stem conv is a :class:`CSCConv` followed by BN **without ReLU** (the codes are
  already non-negative).
* ``csc_blocks`` (the "-All" variants): every 3×3 conv of every block is a CSC layer and there is no
  ReLU inside the block, ``out = BN(CSC₂(BN(CSC₁(x))))``; with ``shortcut`` the (projection or
  identity) shortcut is added and followed by ReLU, without it there is neither shortcut nor ReLU.
  The 1×1 projection stays an ordinary conv + BN. The ImageNet stem of the -All variant replaces the
  max-pool by a 3×3/2 CSC layer (64→64).

Convolutions use PyTorch's symmetric padding ``k // 2``. Call with ``train=True`` for batch
statistics (make ``batch_stats`` and ``power_iteration`` mutable), ``train=False`` for evaluation.
``lam`` overrides λ of every CSC layer and ``stem_lam`` of the stem's CSC layer(s) only (test-time λ).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from sdnet_jax.models.csc import CSCConv

ModuleDef = Callable[..., nn.Module]
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")  # kaiming_normal, fan_out


def _pad(k: int) -> tuple[tuple[int, int], tuple[int, int]]:
    return ((k // 2, k // 2), (k // 2, k // 2))


class BasicBlock(nn.Module):
    """A ResNet BasicBlock; with ``csc`` set, the SDNet-All block (see the module docstring)."""

    features: int
    strides: int
    conv: ModuleDef
    norm: ModuleDef
    csc: ModuleDef | None = None
    shortcut: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, lam: Any = None) -> jax.Array:
        if self.csc is None:
            y = self.conv(self.features, (3, 3), self.strides, padding=_pad(3), name="conv1")(x)
            y = nn.relu(self.norm(name="bn1")(y))
            y = self.conv(self.features, (3, 3), 1, padding=_pad(3), name="conv2")(y)
        else:
            y = self.csc(self.features, 3, self.strides, padding=_pad(3), name="csc1")(x, lam=lam)
            y = self.norm(name="bn1")(y)
            y = self.csc(self.features, 3, 1, padding=_pad(3), name="csc2")(y, lam=lam)
        y = self.norm(name="bn2")(y)
        if self.csc is not None and not self.shortcut:
            return y
        if x.shape[-1] != self.features or self.strides != 1:
            x = self.conv(self.features, (1, 1), self.strides, padding=_pad(1), name="proj_conv")(x)
            x = self.norm(name="proj_bn")(x)
        return nn.relu(y + x)


class ResNet(nn.Module):
    """ResNet / SDNet classifier over NHWC images.

    Attributes:
      stage_sizes: blocks per stage, e.g. ``(2, 2, 2, 2)`` (18) or ``(3, 4, 6, 3)`` (34).
      num_classes: classifier outputs.
      stem: ``'cifar'`` (3×3/1 conv) or ``'imagenet'`` (7×7/2 conv + 3×3/2 max-pool).
      csc_stem: the stem conv is a CSC layer (SDNet).
      csc_blocks: every block conv is a CSC layer (SDNet-All).
      shortcut: keep the shortcut (and final ReLU) of the SDNet-All blocks.
      width: channels of the first stage (64 in the papers).
      stem_width: channels (atoms, for a CSC stem) of the stem; 0 = ``width``. A stem wider than
        the first stage makes the first block's shortcut a projection.
      bn_momentum: momentum of every batch norm's running statistics (0.9 = PyTorch's 0.1; 0 makes a
        ``train=True`` call store the batch's own statistics, which the robustness evaluation uses
        to re-estimate them).
      csc: the CSC layer constructor (a ``functools.partial`` of :class:`CSCConv` with λ, iterations,
        solver, …).
      dtype: computation dtype (float32 or bfloat16); parameters stay float32.
    """

    stage_sizes: Sequence[int]
    num_classes: int
    stem: str = "cifar"
    csc_stem: bool = False
    csc_blocks: bool = False
    shortcut: bool = True
    width: int = 64
    stem_width: int = 0
    bn_momentum: float = 0.9
    csc: ModuleDef = CSCConv
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(
        self, x: jax.Array, train: bool = False, lam: Any = None, stem_lam: Any = None
    ) -> jax.Array:
        if self.stem not in ("cifar", "imagenet"):
            raise ValueError(f"stem must be 'cifar' or 'imagenet', got {self.stem!r}.")
        if x.ndim != 4:
            raise ValueError(f"x must be NHWC images of rank 4, got shape {x.shape}.")
        conv = partial(nn.Conv, use_bias=False, dtype=self.dtype, kernel_init=conv_init)
        norm = partial(
            nn.BatchNorm,
            use_running_average=not train,
            momentum=self.bn_momentum,
            epsilon=1e-5,
            dtype=self.dtype,
        )
        csc = partial(self.csc, dtype=self.dtype)
        stem_lam = lam if stem_lam is None else stem_lam
        x = x.astype(self.dtype)

        k, s = (3, 1) if self.stem == "cifar" else (7, 2)
        stem_width = self.stem_width or self.width
        if self.csc_stem or self.csc_blocks:
            x = csc(stem_width, k, s, padding=_pad(k), name="stem_csc")(x, lam=stem_lam)
            x = norm(name="stem_bn")(x)
        else:
            x = conv(stem_width, (k, k), s, padding=_pad(k), name="stem_conv")(x)
            x = nn.relu(norm(name="stem_bn")(x))
        if self.stem == "imagenet":
            if self.csc_blocks:
                x = csc(stem_width, 3, 2, padding=_pad(3), name="stem_csc2")(x, lam=stem_lam)
            else:
                x = nn.max_pool(x, (3, 3), (2, 2), padding=_pad(3))

        for i, num_blocks in enumerate(self.stage_sizes):
            for j in range(num_blocks):
                block = BasicBlock(
                    features=self.width * 2**i,
                    strides=2 if i > 0 and j == 0 else 1,
                    conv=conv,
                    norm=norm,
                    csc=csc if self.csc_blocks else None,
                    shortcut=self.shortcut,
                    name=f"stage{i + 1}_block{j + 1}",
                )
                x = block(x, lam=lam)
        x = jnp.mean(x, axis=(1, 2))
        x = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)
        return x.astype(jnp.float32)


ResNet18 = partial(ResNet, stage_sizes=(2, 2, 2, 2))
ResNet34 = partial(ResNet, stage_sizes=(3, 4, 6, 3))
SDNet18 = partial(ResNet18, csc_stem=True)
SDNet34 = partial(ResNet34, csc_stem=True)
SDNet18All = partial(ResNet18, csc_blocks=True)
SDNet34All = partial(ResNet34, csc_blocks=True)
SDNet18AllNoShortcut = partial(ResNet18, csc_blocks=True, shortcut=False)
SDNet34AllNoShortcut = partial(ResNet34, csc_blocks=True, shortcut=False)
