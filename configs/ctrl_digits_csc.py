"""CSC-CTRL on scikit-learn's digits (8x8, embedded): the runnable-anywhere CTRL example.

The small-batch recipe (``ctrl_base.small_batch_recipe``, docs/ctrl_recipe_log.md): the reference
game (multi-class T) after an encoder warm-up on ΔR(Z) (the first 130 of 387 steps), an encoder 50x
slower than the decoder and the decoder-only sample-wise code consistency. ``--config.ctrl.code_lam=0
--config.ctrl.enc_lr_scale=1 --config.ctrl.warmup_steps=0 --config.optim.lr=1.5e-4`` is the
reference recipe at this batch (it collapses).
"""

from configs import ctrl_base


def get_config(arg=None):
    return ctrl_base.config(
        "digits", "csc", arg, model__channels=(32, 64), model__kernel_size=3, batch_size=128,
        num_epochs=40.0, data__validation_size=200, eval__subspace_components=4,
        log_every_steps=20, eval_every_steps=100, checkpoint_every_steps=100,
        **ctrl_base.small_batch_recipe(warmup_steps=130),
    )  # fmt: skip
