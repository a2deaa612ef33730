"""CSC-CTRL on CelebA at 64x64 (centre crop 178, resize; four stride-2 CSC stages 64/128/256/512:
64 -> 32 -> 16 -> 8 -> 4, d = 128). No class labels: the binary CTRL objective; the pipeline's
label (the Male attribute) only probes the features at evaluation."""

from configs import ctrl_base


def get_config(arg=None):
    return ctrl_base.config(
        "celeb_a", "csc", arg, data__image_size=64, model__channels=(64, 128, 256, 512),
        ctrl__objective="binary", num_epochs=30.0,
    )  # fmt: skip
