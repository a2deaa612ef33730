"""sdnet18 on cifar10 with SDNet's CIFAR recipe."""

from configs import classifier_base


def get_config(arg=None):
    return classifier_base.cifar("cifar10", "sdnet18", arg)
