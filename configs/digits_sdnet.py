"""The embedded default: a narrow SDNet-18 on scikit-learn's digits (8x8, ships with the package).

Needs no data set download or preparation; trains in a few minutes on 2 CPU cores.
"""

from configs import classifier_base


def get_config(arg=None):
    c = classifier_base.base("sdnet18", "digits")
    c.model.width = 16
    c.data.augment = "none"
    c.data.validation_size = 200
    c.batch_size = 64
    c.eval_batch_size = 256
    c.num_epochs = 30.0
    c.optim.lr = 0.05
    c.optim.weight_decay = 5e-4
    c.log_every_steps = 50
    c.eval_every_steps = 200
    c.checkpoint_every_steps = 200
    return classifier_base.smoke(c) if arg == "smoke" else c
