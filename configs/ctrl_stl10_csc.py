"""CSC-CTRL on STL-10's labelled splits at the native 96x96 (four stride-2 CSC stages 64/128/256/512:
96 -> 48 -> 24 -> 12 -> 6, d = 128). 4500 training images: many epochs of few steps."""

from configs import ctrl_base


def get_config(arg=None):
    return ctrl_base.config(
        "stl10", "csc", arg, model__channels=(64, 128, 256, 512), data__validation_size=500,
        num_epochs=400.0, eval_every_steps=500, checkpoint_every_steps=500,
    )  # fmt: skip
