"""CSC-CTRL on ImageNet at 128x128: one more stride-2 CSC stage than at 64 px (64/128/256/512/1024:
128 -> 64 -> 32 -> 16 -> 8 -> 4, d = 128), batch 256. Binary objective, as ctrl_imagenet64_csc."""

from configs import ctrl_base


def get_config(arg=None):
    return ctrl_base.config(
        "imagenet2012", "csc", arg, data__image_size=128,
        model__channels=(64, 128, 256, 512, 1024), ctrl__objective="binary", batch_size=256,
        data__validation_size=10000, num_epochs=10.0, eval_every_steps=5000,
        checkpoint_every_steps=5000,
    )  # fmt: skip
