"""The DCGAN-style CTRL baseline on Fashion-MNIST, same budget and recipe as ctrl_fashion_mnist_csc
(the code consistency compares the encoder's convolution outputs before BN)."""

from configs import ctrl_base


def get_config(arg=None):
    return ctrl_base.config(
        "fashion_mnist", "dcgan", arg, model__channels=(32, 64), batch_size=256, num_epochs=3.0,
        ctrl__pair_lam=0.0, ctrl__code_lam=10.0, ctrl__enc_lr_scale=0.2, optim__lr=1e-3,
        data__validation_size=5000, log_every_steps=20, eval_every_steps=215,
        checkpoint_every_steps=100,
    )  # fmt: skip
