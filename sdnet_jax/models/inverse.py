"""Hidden features of an SDNet mapped back to the input (SDNet's ``visualize.py`` with
``Lib/models/sdnet_inverse.py``).

The code ``z`` that a chosen layer of a trained SDNet computes from images is mapped back to the
input space through the network's own linear maps, from that layer down to the input: every CSC
layer by its synthesis ``A z`` (the exact adjoint of its analysis convolution, on the zero-padded,
strided operator at the layer's input size) and every batch norm by its inverse in evaluation mode,

    x = (y − bias) / scale · sqrt(var + ε) + mean        (running mean and variance)

(SDNet drops ``ε``; with it the inverse is exact). This is only defined where the path from the
input to the layer is such a chain:

* layer ``(0, 0)`` is the stem (``stem_csc``, ``stem_bn`` and, for the ImageNet stem of the -All
  models, ``stem_csc2``), invertible in every SDNet (a CSC stem); for the ImageNet SDNet-18 the code
  is taken before the max-pool;
* layer ``(stage, block)`` (1-based, as SDNet counts them) is the output of that BasicBlock,
  invertible only in the -All models *without shortcut* (``sdnet18_all_noshortcut``, ...), whose
  blocks are ``BN(CSC₂(BN(CSC₁(x))))`` and nothing else.

A ResNet, or a layer beyond the stem of a model with shortcuts (or ordinary convolutions) in its
blocks, is refused with a ``ValueError`` saying why. Images are in the model's input space (the
normalised images the input pipeline yields); so are the results.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from sdnet_jax.models.csc import CSCConv, operator_pair
from sdnet_jax.models.resnet import ResNet

Layer = tuple[int, int]
STEM: Layer = (0, 0)
SDNET_LAYERS: tuple[Layer, ...] = ((0, 0), (1, 1), (1, 2), (2, 2), (3, 2))
"""The layers SDNet's ``visualize.py`` shows."""


def all_layers(model: nn.Module) -> list[Layer]:
    """The stem ``(0, 0)`` and every ``(stage, block)`` of a ResNet-family model (1-based)."""
    return [STEM] + [(i + 1, j + 1) for i, n in enumerate(model.stage_sizes) for j in range(n)]


def invertible_layers(model: nn.Module) -> list[Layer]:
    """The layers :func:`hidden_features` can map back: none for a model without a CSC stem, the
    stem for every SDNet, and every layer of an -All model without shortcut."""
    if not isinstance(model, ResNet) or not (model.csc_stem or model.csc_blocks):
        return []
    if model.csc_blocks and not model.shortcut:
        return all_layers(model)
    return [STEM]


def check_layer(model: nn.Module, layer: Sequence[int]) -> Layer:
    """``layer`` as a ``(stage, block)`` pair, after checking that :func:`hidden_features` can
    invert it for ``model``.

    Raises:
      ValueError: saying why not (no CSC stem, shortcuts, a layer the model does not have).
    """
    if not isinstance(model, ResNet) or not (model.csc_stem or model.csc_blocks):
        raise ValueError(
            "the model has no CSC stem: only SDNet models (a CSC stem; all layers of the -All models "
            "without shortcut) can be mapped back to the input."
        )
    layer = tuple(int(v) for v in layer)
    if len(layer) != 2 or layer not in all_layers(model):
        raise ValueError(
            f"layer {layer} does not exist in this model; its layers are {all_layers(model)} "
            "((0, 0) = the stem, then (stage, block) counted from 1)."
        )
    if layer not in invertible_layers(model):
        why = "its blocks have shortcuts" if model.csc_blocks else "its blocks are convolutions"
        raise ValueError(
            f"layer {layer} cannot be mapped back to the input: {why} (only the stem (0, 0) of "
            "this model can; every layer of an -All model without shortcut can)."
        )
    return layer


def inverse_batch_norm(y: jax.Array, variables: Any, epsilon: float) -> jax.Array:
    """The inverse of a batch norm in evaluation mode (running statistics), per channel.

    Args:
      y: its output, channels last.
      variables: the batch norm's variables: ``{'params': {'scale', 'bias'}, 'batch_stats':
        {'mean', 'var'}}`` (a missing scale or bias is 1 or 0, as ``use_scale`` / ``use_bias``).
      epsilon: its ``epsilon``.
    """
    params, stats = variables.get("params", {}), variables["batch_stats"]
    scale = params.get("scale", jnp.ones_like(stats["var"]))
    bias = params.get("bias", jnp.zeros_like(stats["mean"]))
    return (y - bias) / scale * jnp.sqrt(stats["var"] + epsilon) + stats["mean"]


@dataclasses.dataclass(frozen=True)
class _Call:
    """One CSC layer or batch norm as the forward pass called it."""

    path: tuple[str, ...]
    module: nn.Module
    variables: Any
    in_hw: tuple[int, int]
    output: jax.Array


def _target(model: ResNet, layer: Layer) -> tuple[str, ...]:
    if layer != STEM:
        return (f"stage{layer[0]}_block{layer[1]}", "bn2")
    return ("stem_csc2",) if model.stem == "imagenet" and model.csc_blocks else ("stem_bn",)


def hidden_features(
    model: nn.Module, variables: Any, images: jax.Array, layer: Sequence[int]
) -> tuple[jax.Array, jax.Array]:
    """The code of ``layer`` for ``images`` and its map back to the input space.

    Runs the model in evaluation mode (trained λ, running statistics), takes the output of
    ``layer`` (see the module docstring) and applies, from that layer down to the input, each CSC
    layer's synthesis ``A z`` and each batch norm's inverse. Pure: jit it with ``model`` and
    ``layer`` static.

    Args:
      model: a ResNet-family classifier (``sdnet_jax.models.get_model``).
      variables: its variables (``params``, ``batch_stats``, ``power_iteration``).
      images: ``(N, H, W, C)`` in the model's input space.
      layer: ``(0, 0)`` for the stem, else ``(stage, block)`` counted from 1.

    Returns:
      ``(code, reconstruction)``: the layer's output ``(N, H', W', C')`` and the image
      ``(N, H, W, C)`` it maps back to.

    Raises:
      ValueError: a model or layer that cannot be inverted (:func:`check_layer`).
    """
    layer = check_layer(model, layer)
    calls: list[_Call] = []

    def record(next_fun: Any, args: Any, kwargs: Any, context: Any) -> Any:
        output = next_fun(*args, **kwargs)
        module = context.module
        if context.method_name == "__call__" and isinstance(module, CSCConv | nn.BatchNorm):
            calls.append(
                _Call(
                    tuple(module.path), module, module.variables, tuple(args[0].shape[1:3]), output
                )
            )
        return output

    with nn.intercept_methods(record):
        model.apply(variables, images, train=False)
    target = _target(model, layer)
    end = next(i for i, call in enumerate(calls) if call.path == target)
    chain = calls[: end + 1]
    code = x = chain[-1].output
    for call in reversed(chain):
        if isinstance(call.module, nn.BatchNorm):
            x = inverse_batch_norm(x, call.variables, call.module.epsilon)
        else:
            dictionary = call.variables["params"]["dictionary"].astype(x.dtype)
            _, synthesis, _ = operator_pair(
                dictionary,
                call.in_hw,
                strides=call.module.strides,
                padding=call.module.padding,
                transpose=call.module.transpose,
            )
            x = synthesis(x)
    return code, x
