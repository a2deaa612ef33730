"""The CTRL reference recipe at its own scale on Fashion-MNIST, DCGAN-style pair
(:func:`configs.ctrl_base.reference_fashion_mnist`); not run on the 2-core machine
(docs/ctrl_recipe_log.md)."""

from configs import ctrl_base


def get_config(arg=None):
    return ctrl_base.reference_fashion_mnist("dcgan", arg)
