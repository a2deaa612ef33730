"""CSC-CTRL on scikit-learn's digits (8x8, embedded): the runnable-anywhere CTRL example."""

from configs import ctrl_base


def get_config(arg=None):
    return ctrl_base.config(
        "digits", "csc", arg, model__channels=(32, 64), model__kernel_size=3, batch_size=128, ctrl__pair_lam=1.0,
        num_epochs=20.0, data__validation_size=200, eval__subspace_components=4,
        log_every_steps=20, eval_every_steps=100, checkpoint_every_steps=100,
    )  # fmt: skip
