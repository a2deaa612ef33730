"""sdnet_jax: convolutional sparse coding in deep networks (SDNet and CSC-CTRL) in JAX/Flax."""

__version__ = "0.1.0"
