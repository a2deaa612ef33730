"""Config of the robustness evaluation: the defaults and their validation (nothing compiled)."""

from __future__ import annotations

from typing import Any

import ml_collections
import numpy as np

from sdnet_jax import checks
from sdnet_jax.data import corruptions as corruptions_lib
from sdnet_jax.runtime import parallel

CLEAN = "clean"
SCOPES = ("stem", "all")
NORMS = ("linf", "l2")
STATS = ("recon_error", "l1", "nonzero_fraction")
STEM = "stem_csc"
PGD_TAG = 7919  # keeps the PGD random starts apart from the corruption noise
CACHE_BYTES = 2**31  # host-side cache of a split's batches up to this size

Cell = tuple[str, int]
"""``(corruption, severity)``, or ``('clean', 0)``."""
Batch = dict[str, np.ndarray]


def default_eval_config() -> ml_collections.ConfigDict:
    """The evaluation options (``config.eval`` of the entrypoint), with their defaults."""
    e = ml_collections.ConfigDict()
    e.corruptions = tuple(corruptions_lib.CORRUPTIONS)  # names in sdnet_jax.data.corruptions
    e.severities = (1, 2, 3, 4, 5)
    e.table = "cifar10"  # corruption parameters: 'cifar10' (CIFAR-10-C) or 'imagenet'
    e.lams = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)  # test-time λ grid (CSC models); () = no sweep
    e.lam_scope = "stem"  # 'stem': the stem's CSC layer only; 'all': every CSC layer
    e.adaptive = True  # fit the adaptive λ rule on validation, report it on test
    e.pgd_norms = ("linf", "l2")  # () = no attack
    e.pgd_linf_epsilons = (0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255)  # in [0, 1] pixel units
    e.pgd_l2_epsilons = (0.0, 0.125, 0.25, 0.5, 1.0)  # in [0, 1] pixel units
    e.pgd_steps = 10
    e.pgd_step_size = 0.25  # per step, as a fraction of ε
    e.pgd_random_start = True
    e.pgd_lams = (0.3,)  # attacked besides the default (trained) λ; CSC models only
    e.batch_size = 250  # global batch size
    e.max_examples = 0  # per split (test, validation); 0 = all
    e.pgd_max_examples = 0  # test examples attacked; 0 = as max_examples
    e.checkpoint = "best"  # 'best' (validation), 'latest' or a step number
    e.data_dir = ""  # overrides the run's config.data.data_dir when set
    e.output_dir = ""  # '' = <workdir>/robustness
    e.seed = 0
    e.plots = True
    return e


def default_config() -> ml_collections.ConfigDict:
    """The entrypoint's config: ``{'eval': default_eval_config()}``."""
    config = ml_collections.ConfigDict()
    config.eval = default_eval_config()
    return config


def _check_numbers(e: Any, name: str, *, allow_empty: bool = True) -> None:
    values = e[name]
    where = f"config.eval.{name}"
    checks.require(
        isinstance(values, list | tuple), f"{where} must be a tuple of numbers, got {values!r}."
    )
    checks.require(allow_empty or len(values) > 0, f"{where} must not be empty.")
    checks.require(
        all(checks.is_number(v) and v >= 0 for v in values),
        f"{where} must hold finite numbers >= 0, got {tuple(values)!r}.",
    )


def validate_eval_config(e: Any) -> None:
    """Raises a ``ValueError`` naming the first bad field of ``config.eval``; compiles nothing."""
    unknown = sorted(set(e.keys()) - set(default_eval_config().keys()))
    checks.require(not unknown, f"config.eval has unknown field(s) {unknown}.")
    names = e.corruptions
    checks.require(
        isinstance(names, list | tuple) and all(n in corruptions_lib.CORRUPTIONS for n in names),
        f"config.eval.corruptions must be names among {list(corruptions_lib.CORRUPTIONS)}, "
        f"got {names!r}.",
    )
    checks.require(len(set(names)) == len(names), "config.eval.corruptions has duplicates.")
    severities = e.severities
    checks.require(
        isinstance(severities, list | tuple)
        and all(checks.is_int(s) and 1 <= s <= corruptions_lib.NUM_SEVERITIES for s in severities),
        f"config.eval.severities must be integers in 1..{corruptions_lib.NUM_SEVERITIES}, "
        f"got {severities!r}.",
    )
    checks.require(
        e.table in corruptions_lib.TABLES,
        f"config.eval.table must be one of {corruptions_lib.TABLES}, got {e.table!r}.",
    )
    _check_numbers(e, "lams")
    checks.require(e.lam_scope in SCOPES, f"config.eval.lam_scope must be one of {SCOPES}.")
    checks.require(isinstance(e.adaptive, bool), "config.eval.adaptive must be a bool.")
    checks.require(
        not e.adaptive or len(set(e.lams)) >= 2,
        "config.eval.adaptive needs at least 2 distinct values in config.eval.lams (or set it "
        "False).",
    )
    norms = e.pgd_norms
    checks.require(
        isinstance(norms, list | tuple) and all(n in NORMS for n in norms),
        f"config.eval.pgd_norms must be names among {NORMS}, got {norms!r}.",
    )
    for norm in norms:
        _check_numbers(e, f"pgd_{norm}_epsilons", allow_empty=False)
    checks.require(
        checks.is_int(e.pgd_steps) and e.pgd_steps >= 1,
        f"config.eval.pgd_steps must be an integer >= 1, got {e.pgd_steps!r}.",
    )
    checks.require(
        checks.is_number(e.pgd_step_size) and e.pgd_step_size > 0,
        f"config.eval.pgd_step_size must be > 0 (a fraction of ε), got {e.pgd_step_size!r}.",
    )
    checks.require(
        isinstance(e.pgd_random_start, bool), "config.eval.pgd_random_start must be a bool."
    )
    _check_numbers(e, "pgd_lams")
    checks.require(
        checks.is_int(e.batch_size) and e.batch_size > 0,
        f"config.eval.batch_size must be a positive integer, got {e.batch_size!r}.",
    )
    parallel.check_batch_size(e.batch_size, "config.eval.batch_size")
    for name in ("max_examples", "pgd_max_examples"):
        checks.require(
            checks.is_int(e[name]) and e[name] >= 0,
            f"config.eval.{name} must be an integer >= 0 (0 = all), got {e[name]!r}.",
        )
    which = str(e.checkpoint)
    checks.require(
        which in ("best", "latest") or which.isdigit(),
        f"config.eval.checkpoint must be 'best', 'latest' or a step number, got {which!r}.",
    )
    checks.require(checks.is_int(e.seed), f"config.eval.seed must be an integer, got {e.seed!r}.")
    checks.require(isinstance(e.plots, bool), "config.eval.plots must be a bool.")
