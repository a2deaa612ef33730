"""sdnet18 on cifar100 with SDNet's CIFAR recipe."""

from configs import classifier_base


def get_config(arg=None):
    return classifier_base.cifar("cifar100", "sdnet18", arg)
