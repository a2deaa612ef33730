"""Demo of the functional CSC ops on a natural image that ships with scikit-image.

Learns a small convolutional dictionary on the ``camera`` image by gradient descent *through* the
unrolled FISTA solver (projected onto unit-norm atoms after every step), then sparse-codes the image
at several λ and prints sparsity and reconstruction quality, and ISTA vs FISTA objectives.

    python -m sdnet_jax.demo [--size 96] [--steps 60]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sdnet_jax import ops


def load_image(size: int) -> np.ndarray:
    """Grey ``camera`` image from scikit-image, resized to ``size``², zero mean, as (1, H, W, 1)."""
    try:
        from skimage import data, transform
    except ImportError as error:
        raise SystemExit(
            "the ops demo needs scikit-image (its 'camera' image): pip install 'sdnet_jax[demo]'"
        ) from error

    img = transform.resize(
        data.camera().astype(np.float32) / 255.0, (size, size), anti_aliasing=True
    )
    img = img - img.mean()
    return img[None, :, :, None].astype(np.float32)


def psnr(x: jax.Array, x_hat: jax.Array, peak: float = 1.0) -> float:
    return float(10 * jnp.log10(peak**2 / jnp.mean(jnp.square(x - x_hat))))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=96, help="image side in pixels")
    parser.add_argument("--atoms", type=int, default=32, help="number of 7x7 atoms")
    parser.add_argument("--steps", type=int, default=60, help="dictionary-learning steps")
    parser.add_argument("--iters", type=int, default=10, help="unrolled FISTA iterations")
    parser.add_argument("--lam", type=float, default=0.02, help="sparsity weight while learning")
    args = parser.parse_args(argv)

    x = jnp.asarray(load_image(args.size))
    hw = x.shape[1:3]
    key_w, key_u = jax.random.split(jax.random.key(0))
    kernel = ops.normalize_atoms(jax.random.normal(key_w, (7, 7, 1, args.atoms)))
    u = jax.random.normal(key_u, x.shape)

    def step_size(kernel, u):
        analysis, _ = ops.conv_pair(kernel, signal_hw=hw)
        lipschitz, u = ops.power_iteration(analysis, u, num_iters=5)
        return 0.9 / lipschitz, u

    def loss_fn(kernel, step):
        analysis, synthesis = ops.conv_pair(kernel, signal_hw=hw)
        z = ops.fista(
            x, analysis, synthesis=synthesis, lam=args.lam, step=step, num_iters=args.iters
        )
        return ops.lasso_objective(x, z, analysis, synthesis=synthesis, lam=args.lam) / x.size

    optimizer = optax.adam(3e-3)

    @jax.jit
    def train_step(kernel, opt_state, u):
        step, u = step_size(kernel, u)
        loss, grad = jax.value_and_grad(loss_fn)(kernel, step)
        updates, opt_state = optimizer.update(grad, opt_state, kernel)
        kernel = ops.normalize_atoms(optax.apply_updates(kernel, updates))  # projected gradient
        return kernel, opt_state, u, loss

    print(f"devices: {jax.devices()}")
    print(f"image: camera {hw[0]}x{hw[1]}, dictionary: {args.atoms} atoms of 7x7")
    opt_state = optimizer.init(kernel)
    start = time.perf_counter()
    for i in range(args.steps):
        kernel, opt_state, u, loss = train_step(kernel, opt_state, u)
        if i % max(args.steps // 5, 1) == 0 or i == args.steps - 1:
            print(f"  step {i:4d}  lasso objective / pixel {float(loss):.5f}")
    print(f"learned the dictionary in {time.perf_counter() - start:.1f}s")

    analysis, synthesis = ops.conv_pair(kernel, signal_hw=hw)
    lipschitz, _ = ops.power_iteration(analysis, u, num_iters=50)
    step = 0.9 / lipschitz
    print(f"||A||^2 = {float(lipschitz):.3f}, step = 0.9/||A||^2 = {float(step):.4f}")
    print(f"{'lambda':>8} {'nonzero %':>10} {'PSNR dB':>8} {'KKT gap':>9}")
    solve = jax.jit(
        lambda lam: ops.fista(x, analysis, synthesis=synthesis, lam=lam, step=step, num_iters=100)
    )
    for lam in [0.005, 0.01, 0.02, 0.05, 0.1]:
        z = solve(lam)
        gap = ops.optimality_gap(x, z, analysis, lam=lam, synthesis=synthesis)
        print(
            f"{lam:8.3f} {100 * float(jnp.mean(z != 0)):10.2f} "
            f"{psnr(x, synthesis(z)):8.2f} {float(gap):9.2e}"
        )
    print(f"objective after K iterations at lambda={args.lam} (lower is better):")
    print(f"{'K':>5} {'ISTA':>10} {'FISTA':>10}")
    for k in [2, 5, 10, 20, 50]:
        objs = [
            float(
                ops.lasso_objective(
                    x,
                    ops.solve_lasso(x, analysis, lam=args.lam, step=step, num_iters=k, method=m),
                    analysis,
                    synthesis=synthesis,
                    lam=args.lam,
                )
            )
            for m in ("ista", "fista")
        ]
        print(f"{k:5d} {objs[0]:10.4f} {objs[1]:10.4f}")


if __name__ == "__main__":
    main()
