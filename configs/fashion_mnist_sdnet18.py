"""sdnet18 on Fashion-MNIST with a reduced schedule (2 CPU cores)."""

from configs import classifier_base


def get_config(arg=None):
    return classifier_base.fashion_mnist("sdnet18", arg)
