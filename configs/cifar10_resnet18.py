"""resnet18 on cifar10 with SDNet's CIFAR recipe."""

from configs import classifier_base


def get_config(arg=None):
    return classifier_base.cifar("cifar10", "resnet18", arg)
