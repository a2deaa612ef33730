"""The CTRL reference recipe at its own scale on Fashion-MNIST, DCGAN-style pair.

LDR's (Delay-Xili/LDR) MNIST-style recipe: 32x32 inputs, channels (64, 128, 256), d = 128, batch
2048, 4500 steps, Adam(0.5, 0.999) lr 1.5e-4 linear decay, multi-class T, no sample-wise term
(pair_lam 0, code_lam 0, both players at the same learning rate). Meant for an accelerator; not run
on the 2-core machine (docs/ctrl_recipe_log.md).
"""

from configs import ctrl_base


def get_config(arg=None):
    return ctrl_base.config(
        "fashion_mnist", "dcgan", arg, model__channels=(64, 128, 256), data__image_size=32,
        batch_size=2048, num_train_steps=4500, optim__lr=1.5e-4, ctrl__objective="multiclass",
        ctrl__pair_lam=0.0, ctrl__code_lam=0.0, ctrl__enc_lr_scale=1.0,
        data__validation_size=5000, eval_batch_size=1000, log_every_steps=50,
        eval_every_steps=500, checkpoint_every_steps=500,
    )  # fmt: skip
