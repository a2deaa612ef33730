"""Solver time-to-accuracy on a classic CSC lasso with a circular boundary (docs/design.md §8).

Problem (the usual convolutional-BPDN set-up of SPORCO's examples)::

    min_z  λ‖z‖₁ + ½‖x − A z‖²,   λ = 0.1,   A = circular convolution with a learned dictionary

* signals: 16 crops of 32x32 from SPORCO's five test images (``sporco/data/*.png``; three or four
  crops per image at seeded random positions), pixel values in [0, 1], Tikhonov high-pass filtered
  (``x − lowpass``, the formula of ``sporco.signal.tikhonov_filter(img, 5.0)``, on the whole image
  before cropping);
* grey case: luminance (``0.299 R + 0.587 G + 0.114 B``), SPORCO's learned greyscale dictionary
  ``convdict.npz['G:8x8x64']`` (64 atoms of 8x8);
* colour case: RGB, SPORCO's learned *colour* dictionary ``convdict.npz['RGB:8x8x3x64']`` (64 atoms of
  8x8x3, one code map per atom shared by the three channels: SPORCO's multi-channel-dictionary
  ``ConvBPDN``, not its "greyscale dictionary per channel" variant);
* atoms renormalised to unit ℓ2 norm (over 8x8xC).

Reference: ``F*`` in float64 from ``--reference-iters`` (300) iterations of our ADMM; its KKT
residual (:func:`~sdnet_jax.ops.optimality_gap`) is printed. (On the grey case it agrees with 2000
float64 iterations of FISTA with restart to a relative 1e-9; thousands of float64 iterations take
minutes on two cores.) Each solver runs in float32 (SPORCO: ``--sporco-dtype``); its objective is
evaluated after every iteration (a separate, instrumented run; residual in float32, sums in
float64) to find the first iteration ``k`` with ``(F(z_k) − F*) / F* <= tol`` for tol = 1e-2, 1e-3,
1e-4. The time reported for ``tol`` is the wall time of a run of exactly ``k`` iterations,
**excluding compilation** (each JAX program is compiled ahead of time,
``jit(...).lower(x).compile()``; SPORCO has nothing to compile): the fastest of ``--repeats`` runs
(default 1). For the ADMM solvers the objective is that of the sparse variable ``Y`` (ours returns
it; SPORCO's ``ConvBPDN.solve`` returns ``X``, whose objective — SPORCO's own ``ObjFun`` — converges
much more slowly: 111 iterations to 1e-2 and more than 120 to 1e-3 on the grey case). The solvers:

* ours (:mod:`sdnet_jax.ops`): FISTA with the direct (NHWC) and the FFT (NCHW) circular operators,
  ADMM with the FFT normal-equation solver (NCHW; SPORCO's ConvBPDN algorithm: over-relaxation
  1.8 and residual-balancing ρ), and, with ``--solvers``, FISTA with adaptive restart (no faster
  than FISTA here); step ``1/L`` with the exact ``L``; the layout transposes are inside the timed
  program. The direct FISTA takes its iteration counts from the FFT one (the same iterates);
* ``sporco.admm.cbpdn.ConvBPDN`` with its default options (``RelStopTol=0`` so that it runs the
  requested iteration count, ``FastSolve`` in the timed runs);
* ``jaxopt.ProximalGradient`` (accelerated, backtracking line search, on our FFT operator).

SPORCO and jaxopt come with the optional ``bench`` extra; without them their rows read "missing".

    python -m benchmarks.solver_accuracy [--cases grey colour] [--json bench_out/solver_accuracy.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import header, write_json
from sdnet_jax import ops

TOLS = (1e-2, 1e-3, 1e-4)
OURS = ("ours fista (direct)", "ours fista (fft)", "ours fista_restart (fft)", "ours admm (fft)")
IMAGES = ("barbara", "kodim23", "monarch", "sail", "tulips")


# ----------------------------------------------------------------------------------- the problem


def sporco_data_dir() -> str | None:
    spec = importlib.util.find_spec("sporco")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(next(iter(spec.submodule_search_locations)), "data")


def tikhonov_highpass(img: np.ndarray, lmbda: float = 5.0, npd: int = 16) -> np.ndarray:
    """``img − lowpass``; lowpass solves ``(I + λ Σ_i G_iᵀG_i) l = img`` (circular, symmetric padding).

    The formula of ``sporco.signal.tikhonov_filter(img, lmbda, npd)[1]``, in NumPy.
    """
    shape = (img.shape[0] + 2 * npd, img.shape[1] + 2 * npd)
    gr = np.fft.rfft2(np.array([[-1.0], [1.0]]), shape)
    gc = np.fft.rfft2(np.array([[-1.0, 1.0]]), shape)
    denom = 1.0 + lmbda * (np.abs(gr) ** 2 + np.abs(gc) ** 2)
    if img.ndim > 2:
        denom = denom[..., None]
    padded = np.pad(img, ((npd, npd), (npd, npd)) + ((0, 0),) * (img.ndim - 2), "symmetric")
    low = np.fft.irfft2(np.fft.rfft2(padded, axes=(0, 1)) / denom, s=shape, axes=(0, 1))
    return img - low[npd:-npd, npd:-npd]


def build_problem(case: str, num_crops: int = 16, size: int = 32, seed: int = 0):
    """``(x, kernel, source)``: float64 signals ``(N, size, size, C)`` and an HWIO dictionary."""
    from PIL import Image

    data = sporco_data_dir()
    rng = np.random.default_rng(seed)
    if data is not None:
        images = [
            np.asarray(Image.open(os.path.join(data, f"{n}.png")).convert("RGB"), np.float64) / 255
            for n in IMAGES
        ]
        dicts = np.load(os.path.join(data, "convdict.npz"))
        source = "sporco data: 5 test images, convdict.npz"
        kernel = dicts["G:8x8x64"][:, :, None, :] if case == "grey" else dicts["RGB:8x8x3x64"]
    else:  # without the bench extra: scikit-image's test images and a random dictionary
        from skimage import data as skdata

        images = [skdata.astronaut() / 255.0, skdata.coffee() / 255.0, skdata.chelsea() / 255.0]
        source = "FALLBACK (no sporco): skimage images, random dictionary; not comparable"
        channels = 1 if case == "grey" else 3
        kernel = rng.standard_normal((8, 8, channels, 64))
    crops = []
    for i in range(num_crops):
        img = images[i % len(images)]
        if case == "grey":
            img = img @ np.array([0.299, 0.587, 0.114])
        high = tikhonov_highpass(img, 5.0)
        r = rng.integers(0, img.shape[0] - size + 1)
        c = rng.integers(0, img.shape[1] - size + 1)
        crop = high[r : r + size, c : c + size]
        crops.append(crop[..., None] if crop.ndim == 2 else crop)
    kernel = np.asarray(ops.normalize_atoms(jnp.asarray(kernel, jnp.float64)))
    return np.stack(crops), kernel, source


# ------------------------------------------------------------------------------------ the solvers


class Solver:
    """``trace(k)``: objectives (float64) after iterations 1..k; ``timed(k)``: a callable running k."""

    def __init__(self, name, trace, timed, max_iters: int, same_iterates_as: str | None = None):
        self.name, self.trace, self.timed, self.max_iters = name, trace, timed, max_iters
        self.same_iterates_as = same_iterates_as


def objective_fn(x64, kernel64, lam):
    """``F(z)``: the residual in float32 (the solvers' precision), the sums in float64."""
    x = jnp.asarray(x64, jnp.float32)
    _, synthesis = ops.circular_conv_pair(
        jnp.asarray(kernel64, jnp.float32), signal_hw=x.shape[1:3]
    )

    def objective(z):
        z = z.astype(jnp.float32)
        residual = (x - synthesis(z)).astype(jnp.float64)
        l1 = jnp.sum(jnp.abs(z).astype(jnp.float64))
        return lam * l1 + 0.5 * jnp.sum(jnp.square(residual))

    return objective


def to_layout(v, layout):
    return v if layout == "NHWC" else jnp.moveaxis(v, 3, 1)


def from_layout(v, layout):
    return v if layout == "NHWC" else jnp.moveaxis(v, 1, 3)


def our_solvers(x64, kernel64, lam, max_iters):
    x = jnp.asarray(x64, jnp.float32)
    kernel = jnp.asarray(kernel64, jnp.float32)
    hw = x.shape[1:3]
    objective = objective_fn(x64, kernel64, lam)
    step = float(1.0 / ops.circular_conv_lipschitz(jnp.asarray(kernel64), signal_hw=hw))
    variants = {  # name: (method, impl, layout)
        "ours fista (direct)": ("fista", "direct", "NHWC"),
        "ours fista (fft)": ("fista", "fft", "NCHW"),
        "ours fista_restart (fft)": ("fista_restart", "fft", "NCHW"),
        "ours admm (fft)": ("admm", "fft", "NCHW"),
    }
    solvers = []
    for name, (method, impl, layout) in variants.items():

        def kwargs(method=method, impl=impl, layout=layout):
            analysis, synthesis = ops.circular_conv_pair(
                kernel, signal_hw=hw, impl=impl, layout=layout
            )
            kw = dict(synthesis=synthesis, lam=lam, method=method)
            if method == "admm":
                kw["normal_solver"] = ops.circular_conv_normal_solver(
                    kernel, signal_hw=hw, layout=layout
                )
            else:
                kw["step"] = step
            return analysis, kw

        def trace(k, kwargs=kwargs, layout=layout):
            analysis, kw = kwargs()
            observe = lambda z: objective(from_layout(z, layout))
            run = jax.jit(
                lambda x: ops.solve_lasso(
                    to_layout(x, layout), analysis, observe=observe, num_iters=k, **kw
                )[1]
            )
            return np.asarray(run(x))

        def timed(k, kwargs=kwargs, layout=layout):
            analysis, kw = kwargs()
            run = jax.jit(
                lambda x: from_layout(
                    ops.solve_lasso(to_layout(x, layout), analysis, num_iters=k, **kw), layout
                )
            )
            compiled = run.lower(x).compile()
            return lambda: compiled(x)

        # FISTA's iterates do not depend on the operator's implementation: the direct one takes
        # its iteration counts from the FFT one's trace when that runs (saves a slow trace)
        same = "ours fista (fft)" if name == "ours fista (direct)" else None
        solvers.append(Solver(name, trace, timed, max_iters[method], same_iterates_as=same))
    return solvers


def jaxopt_solver(x64, kernel64, lam, max_iters):
    if importlib.util.find_spec("jaxopt") is None:
        return None
    import jaxopt

    x = jnp.asarray(x64, jnp.float32)
    hw = x.shape[1:3]
    kernel = jnp.asarray(kernel64, jnp.float32)
    _, synthesis = ops.circular_conv_pair(kernel, signal_hw=hw, layout="NCHW")  # as ours (fft)
    objective = objective_fn(x64, kernel64, lam)
    z0 = jnp.zeros((x.shape[0], kernel64.shape[-1], *hw), jnp.float32)

    def fun(z, x):
        return 0.5 * jnp.sum(jnp.square(to_layout(x, "NCHW") - synthesis(z)))

    def make(k):
        return jaxopt.ProximalGradient(
            fun=fun, prox=jaxopt.prox.prox_lasso, maxiter=k, tol=0.0, acceleration=True, jit=True
        )  # stepsize <= 0 (the default): backtracking line search

    def trace(k):
        solver = make(k)
        update = jax.jit(solver.update)
        z, state = z0, solver.init_state(z0, lam, x)
        out = []
        for _ in range(k):
            z, state = update(z, state, lam, x)
            out.append(objective(from_layout(z, "NCHW")))
        return np.asarray(jnp.stack(out))

    def timed(k):
        solver = make(k)
        run = jax.jit(lambda x: from_layout(solver.run(z0, lam, x).params, "NCHW"))
        compiled = run.lower(x).compile()
        return lambda: compiled(x)

    return Solver("jaxopt ProximalGradient (fft, backtracking)", trace, timed, max_iters)


def sporco_solver(x64, kernel64, lam, max_iters, dtype):
    if importlib.util.find_spec("sporco") is None:
        return None
    import warnings

    with warnings.catch_warnings():  # "pyfftw could not be imported": SPORCO falls back to NumPy
        warnings.simplefilter("ignore")
        from sporco.admm import cbpdn

    # SPORCO layout: S (H, W, [C,] K), D (h, w, [C,] M); grey signals drop the channel axis
    s = np.moveaxis(x64, 0, -1).astype(dtype)
    d = kernel64.astype(dtype)
    if x64.shape[-1] == 1:
        s, d = s[:, :, 0], d[:, :, 0]
    objective = objective_fn(x64, kernel64, lam)

    def to_ours(coef):  # SPORCO's X (H, W, [C=1,] K, M) -> ours (K, H, W, M), shifted to our centre
        coef = coef.reshape(s.shape[0], s.shape[1], s.shape[-1], d.shape[-1])
        shift = tuple((n - 1) // 2 for n in d.shape[:2])
        return np.roll(np.moveaxis(coef, 2, 0), shift, axis=(1, 2))

    def options(k, **extra):
        opt = {"Verbose": False, "MaxMainIter": k, "RelStopTol": 0.0, "AbsStopTol": 0.0}
        return cbpdn.ConvBPDN.Options({**opt, **extra})

    def trace(k):
        out = []

        def callback(solver):
            out.append(float(objective(jnp.asarray(to_ours(solver.Y)))))
            return False

        cbpdn.ConvBPDN(d, s, lam, options(k, Callback=callback), dimK=1).solve()
        return np.asarray(out)

    def timed(k):
        def run():
            cbpdn.ConvBPDN(d, s, lam, options(k, FastSolve=True), dimK=1).solve()

        return run

    name = f"sporco ConvBPDN admm ({np.dtype(dtype).name})"
    return Solver(name, trace, timed, max_iters)


# --------------------------------------------------------------------------------- measurement


def reference(x64, kernel64, lam, iters):
    """``F*`` from ``iters`` float64 iterations of our ADMM; also its KKT residual."""
    x = jnp.asarray(x64)
    kernel = jnp.asarray(kernel64)
    hw = x.shape[1:3]
    analysis, synthesis = ops.circular_conv_pair(kernel, signal_hw=hw)
    normal_solver = ops.circular_conv_normal_solver(kernel, signal_hw=hw)

    @jax.jit
    def solve(x):
        z = ops.admm(
            x, analysis, synthesis=synthesis, normal_solver=normal_solver, lam=lam, num_iters=iters
        )
        gap = ops.optimality_gap(x, z, analysis, synthesis=synthesis, lam=lam)
        return ops.lasso_objective(x, z, analysis, synthesis=synthesis, lam=lam), gap

    f_star, kkt = solve(x)
    return float(f_star), float(kkt)


def time_run(make_run: Callable, repeats: int) -> float:
    run = make_run()  # compiles ahead of time (JAX)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(run())
        times.append(time.perf_counter() - start)
    return float(np.min(times))  # the least disturbed run (the machines are shared)


def measure(solver: Solver, f_star: float, repeats: int, gaps_of: dict) -> dict:
    if solver.same_iterates_as in gaps_of:
        gaps = gaps_of[solver.same_iterates_as]
    else:
        gaps = (solver.trace(solver.max_iters) - f_star) / abs(f_star)
    gaps_of[solver.name] = gaps
    row = dict(solver=solver.name, max_iters=solver.max_iters, final_gap=float(gaps[-1]))
    for tol in TOLS:
        hit = np.flatnonzero(gaps <= tol)
        k = int(hit[0]) + 1 if hit.size else None
        seconds = time_run(lambda k=k: solver.timed(k), repeats) if k else None
        row[f"{tol:g}"] = dict(iters=k, seconds=seconds)
    return row


def run_case(case: str, args) -> dict:
    x64, kernel64, source = build_problem(case, num_crops=args.crops, size=args.size)
    lam = args.lam
    start = time.perf_counter()
    f_star, kkt = reference(x64, kernel64, lam, args.reference_iters)
    print(
        f"\n== {case}: x {x64.shape}, dictionary {kernel64.shape}, λ={lam} ({source})\n"
        f"   F* = {f_star:.8g} from {args.reference_iters} float64 ADMM iterations "
        f"(KKT residual {kkt:.1e}, {time.perf_counter() - start:.0f} s)"
    )
    short = args.max_iters * 3 // 8  # ADMM-like solvers need far fewer iterations
    max_iters = dict(fista=args.max_iters, fista_restart=args.max_iters, admm=short)
    solvers = [s for s in our_solvers(x64, kernel64, lam, max_iters) if s.name in args.solvers]
    missing = []
    for name, make in [
        ("sporco", lambda: sporco_solver(x64, kernel64, lam, short, args.sporco_dtype)),
        ("jaxopt", lambda: jaxopt_solver(x64, kernel64, lam, short)),
    ]:
        if name not in args.solvers:
            continue
        solver = make()
        if solver is None:
            missing.append(name)
        else:
            solvers.append(solver)
    cols = "".join(f"{'gap ' + format(t, 'g'):>18}" for t in TOLS)
    print(f"   {'solver':<44}{cols}   (iterations / seconds)")
    rows, gaps_of = [], {}
    # the FFT FISTA first: the direct one reuses its iteration counts
    solvers.sort(key=lambda s: s.same_iterates_as is not None)
    for solver in solvers:
        row = measure(solver, f_star, args.repeats, gaps_of)
        rows.append(row)
        cells = "".join(
            f"{row[f'{t:g}']['iters']:>8} / {row[f'{t:g}']['seconds']:6.3f} s"
            if row[f"{t:g}"]["iters"]
            else f"{'> ' + str(solver.max_iters):>8} /      - s"
            for t in TOLS
        )
        print(f"   {solver.name:<44}{cells}", flush=True)
    for name in missing:
        print(f"   {name:<44} missing (pip install -e '.[bench]')")
    return dict(
        case=case,
        source=source,
        shape=list(x64.shape),
        dictionary=list(kernel64.shape),
        lam=lam,
        f_star=f_star,
        reference_kkt=kkt,
        reference_iters=args.reference_iters,
        rows=rows,
        missing=missing,
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cases", nargs="+", default=["grey", "colour"], choices=["grey", "colour"]
    )
    parser.add_argument("--lam", type=float, default=0.1)
    parser.add_argument("--crops", type=int, default=16, help="signals per case")
    parser.add_argument("--size", type=int, default=32, help="crop height and width")
    parser.add_argument(
        "--solvers",
        nargs="+",
        default=[*OURS[:2], OURS[3], "sporco", "jaxopt"],
        choices=[*OURS, "sporco", "jaxopt"],
        help="default: all but 'ours fista_restart (fft)' (no faster than FISTA here)",
    )
    parser.add_argument("--max-iters", type=int, default=400, help="FISTA trace length")
    parser.add_argument("--reference-iters", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per tolerance (min)")
    parser.add_argument("--sporco-dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--json", default="bench_out/solver_accuracy.json")
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)  # for the reference and the objective evaluations
    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform} ({os.cpu_count()} CPUs); "
        "times exclude compilation (every program is compiled ahead of time)"
    )
    result = dict(header(), tols=list(TOLS), cases=[run_case(c, args) for c in args.cases])
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
