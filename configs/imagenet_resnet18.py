"""resnet18 on ImageNet (imagenet2012) with SDNet's ImageNet recipe."""

from configs import classifier_base


def get_config(arg=None):
    return classifier_base.imagenet("resnet18", arg)
