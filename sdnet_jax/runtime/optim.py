"""Optimizers and learning-rate schedules from a config (``config.optim``), stepped per iteration.

Fields: ``name`` ('sgd' | 'adam'), ``lr``, ``momentum``, ``nesterov``, ``b1``, ``b2``,
``weight_decay`` (coupled L2 added to the gradient before momentum, as PyTorch's SGD
``weight_decay``), ``schedule`` ('constant' | 'cosine' | 'step' | 'linear'), ``end_lr`` (cosine /
linear), ``warmup_steps``, ``boundaries`` (fractions of training, or epochs when
``steps_per_epoch`` is given, for 'step') and ``decay_factor``.
"""

from __future__ import annotations

from typing import Any

import optax

from sdnet_jax import checks

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "cosine", "step", "linear")


def schedule(optim: Any, total_steps: int, steps_per_epoch: float | None = None) -> optax.Schedule:
    """The per-step learning-rate schedule of ``optim`` over ``total_steps`` steps."""
    lr, warmup = float(optim.lr), int(optim.warmup_steps)
    name = optim.schedule
    if name == "constant":
        main = optax.constant_schedule(lr)
    elif name == "cosine":
        main = optax.cosine_decay_schedule(
            lr, max(total_steps - warmup, 1), alpha=float(optim.end_lr) / lr
        )
    elif name == "linear":
        main = optax.linear_schedule(lr, float(optim.end_lr), max(total_steps - warmup, 1))
    elif name == "step":
        unit = steps_per_epoch if steps_per_epoch else total_steps
        main = optax.piecewise_constant_schedule(
            lr, {round(b * unit) - warmup: float(optim.decay_factor) for b in optim.boundaries}
        )
    else:
        raise ValueError(f"optim.schedule must be one of {SCHEDULES}, got {name!r}.")
    if warmup:
        return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])
    return main


def make_optimizer(optim: Any, learning_rate: optax.Schedule) -> optax.GradientTransformation:
    """SGD (momentum, Nesterov) or Adam, with coupled weight decay first."""
    if optim.name == "sgd":
        base = optax.sgd(learning_rate, momentum=optim.momentum or None, nesterov=optim.nesterov)
    elif optim.name == "adam":
        base = optax.adam(learning_rate, b1=optim.b1, b2=optim.b2)
    else:
        raise ValueError(f"optim.name must be one of {OPTIMIZERS}, got {optim.name!r}.")
    if optim.weight_decay:
        return optax.chain(optax.add_decayed_weights(optim.weight_decay), base)
    return base


def validate(optim: Any, where: str = "optim") -> None:
    """Raises a ValueError naming the first bad field of an optimizer config."""
    require = checks.require
    require(
        optim.name in OPTIMIZERS, f"{where}.name must be one of {OPTIMIZERS}, got {optim.name!r}."
    )
    require(
        optim.schedule in SCHEDULES,
        f"{where}.schedule must be one of {SCHEDULES}, got {optim.schedule!r}.",
    )
    require(optim.lr > 0, f"{where}.lr must be > 0, got {optim.lr!r}.")
    for field in ("weight_decay", "warmup_steps"):
        value = optim.get(field, 0)
        require(value >= 0, f"{where}.{field} must be >= 0, got {value!r}.")
    if optim.schedule in ("cosine", "linear"):
        require(optim.end_lr >= 0, f"{where}.end_lr must be >= 0, got {optim.end_lr!r}.")
