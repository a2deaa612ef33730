"""CSC-CTRL on scikit-learn's digits (8x8, embedded): the runnable-anywhere CTRL example.

The small-batch recipe (docs/ctrl_recipe_log.md): the reference game (multi-class T, no pair term)
plus the decoder-only sample-wise code consistency (code_lam) and an encoder that learns 5x slower
than the decoder (enc_lr_scale). ``--config.ctrl.code_lam=0 --config.ctrl.enc_lr_scale=1
--config.optim.lr=1.5e-4`` is the reference recipe at this batch (it collapses).
"""

from configs import ctrl_base


def get_config(arg=None):
    return ctrl_base.config(
        "digits", "csc", arg, model__channels=(32, 64), model__kernel_size=3, batch_size=128,
        ctrl__pair_lam=0.0, ctrl__code_lam=10.0, ctrl__enc_lr_scale=0.2, optim__lr=1e-3,
        num_epochs=40.0, data__validation_size=200, eval__subspace_components=4,
        log_every_steps=20, eval_every_steps=100, checkpoint_every_steps=100,
    )  # fmt: skip
