"""CSC-CTRL on ImageNet at 64x64 (shorter side 64, centre crop; four stride-2 CSC stages
64/128/256/512: 64 -> 32 -> 16 -> 8 -> 4, d = 128). With 1000 classes a batch of 512 holds at
most a few images per class, so the binary CTRL objective; labels only probe the features."""

from configs import ctrl_base


def get_config(arg=None):
    return ctrl_base.config(
        "imagenet2012", "csc", arg, data__image_size=64, model__channels=(64, 128, 256, 512),
        ctrl__objective="binary", data__validation_size=10000, num_epochs=10.0,
        eval_every_steps=5000, checkpoint_every_steps=5000,
    )  # fmt: skip
