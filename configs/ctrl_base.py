"""Shared pieces of the CSC-CTRL / CTRL configs (docs/design.md sections 5 and 6)."""

from __future__ import annotations

import ml_collections

from configs import common


def base(model: str, dataset: str) -> ml_collections.ConfigDict:
    """The CTRL reference recipe: Adam(0.5, 0.999), lr 1.5e-4 with linear decay, d = 128."""
    c = common.base("ctrl", model, dataset)
    c.model.channels = (64, 128, 256)
    c.model.strides = ()  # () = 2 for every stage
    c.model.kernel_size = 4
    c.model.feature_dim = 128
    c.ctrl = ml_collections.ConfigDict()
    c.ctrl.objective = "multiclass"  # 'multiclass' | 'binary' | 'unsupervised'
    c.ctrl.eps_sq = 0.5
    c.ctrl.n_inner = 1  # encoder steps per decoder step
    c.ctrl.pair_lam = (
        0.0  # weight of the sample-wise self-consistency sum_i D(z_i, z^_i), both players
    )
    c.ctrl.pairwise = "cosine"  # D: 'cosine' | 'l2'
    c.ctrl.pair_players = "both"  # who reduces pair_lam * D: 'both' | 'decoder'
    c.ctrl.code_lam = 0.0  # weight of the decoder-only sample-wise code consistency (0: off)
    c.ctrl.enc_lr_scale = 1.0  # the encoder's learning rate / the decoder's (optim.lr)
    c.ctrl.warmup_steps = 0  # first steps: the encoder maximises ΔR(Z) alone, at the full lr
    c.optim.name = "adam"
    c.optim.lr = 1.5e-4
    c.optim.b1 = 0.5
    c.optim.b2 = 0.999
    c.optim.weight_decay = 0.0
    c.optim.schedule = "linear"
    c.optim.end_lr = 0.0
    c.batch_size = 512
    c.eval_batch_size = 500
    c.num_epochs = 100.0
    c.eval = ml_collections.ConfigDict()
    c.eval.max_examples = 2000  # examples of each split used by the evaluation
    c.eval.subspace_fit_examples = 5000  # train features the nearest-subspace classifier fits
    c.eval.subspace_components = 12
    c.eval.feature_net = "random"  # 'random' (a fixed random conv net) | 'classifier'
    c.eval.classifier_workdir = ""  # with 'classifier': a trained classifier's workdir
    # a classifier run on the same data set: its accuracy on X̂ beside X (evaluation.fidelity)
    c.eval.fidelity_classifier_workdir = ""
    return c


def small_batch_recipe(warmup_steps: int, eps_sq: float = 0.5) -> dict:
    """Overrides of the small-batch recipe (docs/ctrl_recipe_log.md; :func:`config` keywords): the
    reference game (multi-class T, no sample-wise feature term) with (1) an encoder warm-up: for
    the first ``warmup_steps`` steps the encoder maximises ΔR(Z) alone at the full learning rate,
    (2) then an encoder 50x slower than the decoder, and (3) the decoder-only sample-wise code
    consistency C (weight 10), at lr 1e-3. ``eps_sq``: the rate's ε² (the reference's 0.5; the
    Fashion-MNIST configs use 2, which separates the classes better: issue 25)."""
    return dict(
        ctrl__pair_lam=0.0, ctrl__code_lam=10.0, ctrl__enc_lr_scale=0.02,
        ctrl__warmup_steps=warmup_steps, ctrl__eps_sq=eps_sq, optim__lr=1e-3,
    )  # fmt: skip


def smoke(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The tiny form: two narrow stages, a few steps, small batches and evaluations."""
    c.model.channels = (4, 8)
    c.model.feature_dim = 8
    c.batch_size = 16
    c.eval_batch_size = 16
    c.num_train_steps = 2
    c.log_every_steps = 1
    c.eval_every_steps = 0
    c.checkpoint_every_steps = 2
    c.data.validation_size = 32
    c.eval.max_examples = 32
    c.eval.subspace_fit_examples = 32
    c.eval.subspace_components = 2
    return c


def config(dataset: str, model: str, arg: str | None, **overrides) -> ml_collections.ConfigDict:
    c = base(model, dataset)
    for key, value in overrides.items():
        section, field = key.split("__") if "__" in key else (None, key)
        (c[section] if section else c)[field] = value
    return smoke(c) if arg == "smoke" else c


def reference_fashion_mnist(model: str, arg: str | None) -> ml_collections.ConfigDict:
    """The CTRL reference recipe at its own scale on Fashion-MNIST: LDR's (Delay-Xili/LDR)
    MNIST-style recipe, 32x32 inputs, channels (64, 128, 256), d = 128, batch 2048, 4500 steps,
    Adam(0.5, 0.999) lr 1.5e-4 linear decay, multi-class T, no sample-wise term (pair_lam 0,
    code_lam 0, both players at the same learning rate). Meant for an accelerator."""
    return config(
        "fashion_mnist", model, arg, model__channels=(64, 128, 256), data__image_size=32,
        batch_size=2048, num_train_steps=4500, optim__lr=1.5e-4, ctrl__objective="multiclass",
        ctrl__pair_lam=0.0, ctrl__code_lam=0.0, ctrl__enc_lr_scale=1.0,
        data__validation_size=5000, eval_batch_size=1000, log_every_steps=50,
        eval_every_steps=500, checkpoint_every_steps=500,
    )  # fmt: skip
