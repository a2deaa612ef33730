"""CSC-CTRL on Fashion-MNIST (28x28 grey: 28 -> 14 -> 7), a schedule for 2 CPU cores.

The small-batch recipe (docs/ctrl_recipe_log.md): the reference game (multi-class T, no pair term)
plus the decoder-only sample-wise code consistency (code_lam) and an encoder that learns 5x slower
than the decoder (enc_lr_scale). configs/ctrl_fashion_mnist_reference_csc.py is the reference recipe.
"""

from configs import ctrl_base


def get_config(arg=None):
    return ctrl_base.config(
        "fashion_mnist", "csc", arg, model__channels=(32, 64), batch_size=256, num_epochs=3.0,
        ctrl__pair_lam=0.0, ctrl__code_lam=10.0, ctrl__enc_lr_scale=0.2, optim__lr=1e-3,
        data__validation_size=5000, log_every_steps=20, eval_every_steps=215,
        checkpoint_every_steps=100,
    )  # fmt: skip
