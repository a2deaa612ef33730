"""The DCGAN-style CTRL baseline on Fashion-MNIST, same budget and recipe as ctrl_fashion_mnist_csc
(the code consistency compares the encoder's convolution outputs before BN)."""

from configs import ctrl_base


def get_config(arg=None):
    return ctrl_base.config(
        "fashion_mnist", "dcgan", arg, model__channels=(32, 64), batch_size=256, num_epochs=2.0,
        data__validation_size=5000, log_every_steps=20, eval_every_steps=215,
        checkpoint_every_steps=100, **ctrl_base.small_batch_recipe(warmup_steps=300, eps_sq=2.0),
    )  # fmt: skip
