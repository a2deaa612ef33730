"""The argument and config checks of the whole package (ops arguments, model options, configs).

Every check runs in Python on static information (shapes, Python numbers, concrete arrays, config
values), so a bad argument raises a ``ValueError`` naming it before anything is traced or compiled.
Values that are traced (for example a step size computed inside ``jit``) cannot be inspected and
are let through. Imports jax and numpy only, so :mod:`sdnet_jax.ops` can use it.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np


def require(condition: bool, message: str) -> None:
    """Raises ``ValueError(message)`` unless ``condition``; the message names the bad field."""
    if not condition:
        raise ValueError(message)


def is_int(value) -> bool:
    """A Python / NumPy integer that is not a bool."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def is_number(value) -> bool:
    """A finite Python / NumPy real number that is not a bool."""
    real = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    return real and bool(np.isfinite(value))


def concrete_value(value) -> np.ndarray | None:
    """Returns ``value`` as a NumPy array when it is known at trace time, else ``None``."""
    if isinstance(value, jax.core.Tracer):
        return None
    try:
        return np.asarray(value)
    except Exception:
        return None


def check_positive(name: str, value, *, allow_zero: bool = False) -> None:
    """Raises if a concrete ``value`` has an entry that is not > 0 (or >= 0 with ``allow_zero``)."""
    arr = concrete_value(value)
    if arr is None:
        return
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {value!r}.")
    bad = arr < 0 if allow_zero else arr <= 0
    if np.any(bad):
        rule = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {rule}, got {value!r}.")


def check_int(name: str, value, *, minimum: int) -> int:
    """Returns ``value`` as an int, raising unless it is a Python/NumPy integer >= ``minimum``."""
    if not is_int(value):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def check_rank(name: str, array, rank: int, layout: str) -> None:
    """Raises unless ``array`` has ``rank`` dimensions (``layout`` names them in the message)."""
    if np.ndim(array) != rank:
        raise ValueError(
            f"{name} must have rank {rank} ({layout}), got shape {tuple(np.shape(array))}."
        )


def check_choice(name: str, value, choices: Sequence[str]) -> str:
    """Raises unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}.")
    return value


def pair(name: str, value) -> tuple[int, int]:
    """Normalises an int or a length-2 sequence of positive ints to a pair."""
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        out = (int(value), int(value))
    elif isinstance(value, Sequence) and len(value) == 2:
        out = (int(value[0]), int(value[1]))
    else:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}.")
    if min(out) < 1:
        raise ValueError(f"{name} must be positive, got {value!r}.")
    return out


def feature_matrix(name: str, features) -> np.ndarray:
    """``features`` as a float64 ``(m, d)`` array of finite values; a ``ValueError`` naming it
    otherwise."""
    z = np.asarray(features, np.float64)
    if z.ndim != 2:
        raise ValueError(f"{name} must have shape (m, d), got {z.shape}.")
    if not np.all(np.isfinite(z)):
        raise ValueError(f"{name} has non-finite values.")
    return z
