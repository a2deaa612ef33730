"""The DCGAN-style CTRL baseline on CIFAR-10 (the CTRL papers' architecture family)."""

from configs import ctrl_base


def get_config(arg=None):
    return ctrl_base.config("cifar10", "dcgan", arg)
