"""The DCGAN-style CTRL baseline on Fashion-MNIST, same budget as ctrl_fashion_mnist_csc."""

from configs import ctrl_base


def get_config(arg=None):
    return ctrl_base.config(
        "fashion_mnist", "dcgan", arg, model__channels=(32, 64), batch_size=256, num_epochs=3.0,
        ctrl__pair_lam=1.0, optim__lr=3e-4,
        data__validation_size=5000, log_every_steps=20, eval_every_steps=200,
        checkpoint_every_steps=100,
    )  # fmt: skip
