"""The DCGAN-style CTRL baseline on scikit-learn's digits (8x8, embedded), same budget and recipe as
ctrl_digits_csc (the code consistency compares the encoder's convolution outputs before BN)."""

from configs import ctrl_base


def get_config(arg=None):
    return ctrl_base.config(
        "digits", "dcgan", arg, model__channels=(32, 64), model__kernel_size=3, batch_size=128,
        num_epochs=40.0, data__validation_size=200, eval__subspace_components=4,
        log_every_steps=20, eval_every_steps=100, checkpoint_every_steps=100,
        **ctrl_base.small_batch_recipe(warmup_steps=130),
    )  # fmt: skip
