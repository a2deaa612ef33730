"""CSC-CTRL on CIFAR-10 (32x32 RGB: three stride-2 CSC stages 64/128/256, d = 128)."""

from configs import ctrl_base


def get_config(arg=None):
    return ctrl_base.config("cifar10", "csc", arg)
