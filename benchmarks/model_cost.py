"""Train-step time and peak memory of SDNet-18 and SDNet-18-All relative to ResNet-18.

The step is the classifier's own (:func:`sdnet_jax.train.classifier.make_train_step`: forward in
training mode with ``batch_stats`` and ``power_iteration`` mutable, softmax cross-entropy, SGD with
Nesterov momentum 0.9 and weight decay 5e-4, then ``project_dictionaries``), jitted with the state
donated as the training loop does, on one device. Setups: CIFAR (32x32, 10 classes, CIFAR stem) and
ImageNet (224x224, 1000 classes, ImageNet stem), each with its own batch.

* time: ``model step / ResNet-18 step``, the two interleaved in one process, median over repeats;
* memory: from the compiled executable's ``memory_analysis()``, deterministic:
  ``peak = argument + output − alias + temp`` bytes (inputs, outputs with the donated state counted
  once, and XLA's scratch buffers), and ``temp`` alone (the activations kept for the backward pass
  live there);
* flops: XLA's FLOP count of the compiled step (``cost_analysis()``).

``--repeats 0`` skips the timing (FLOPs and memory need only the compilation), e.g. at the recipes'
batches: ``--repeats 0 --batch 128 --batch-224 64``.

    python -m benchmarks.model_cost [--batch 16] [--batch-224 2] [--repeats 3]
        [--setups cifar imagenet] [--models sdnet18 sdnet18_all] [--json bench_out/model_cost.json]
"""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import jax
import jax.numpy as jnp
import ml_collections

from benchmarks.common import header, median_ratio, write_json
from benchmarks.layer_cost import flops
from sdnet_jax import models
from sdnet_jax.runs.classifier import make_init_state
from sdnet_jax.runtime import optim
from sdnet_jax.train import classifier

SETUPS = {"cifar": (32, 10, "cifar"), "imagenet": (224, 1000, "imagenet")}
BASELINE = "resnet18"
# The initialisation is run once and not timed; XLA compiles it 3-4x faster with these options.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


class Stepper:
    """Calls a compiled train step on its own (donated, hence replaced) state and a fixed batch."""

    def __init__(self, compiled, state, batch):
        self.compiled, self.state, self.batch = compiled, state, batch

    def __call__(self):
        self.state, metrics = self.compiled(self.state, self.batch)
        return metrics


def build(name: str, size: int, num_classes: int, stem: str, batch_size: int, **model_kw):
    """``(Stepper, memory row)`` of one model's compiled train step."""
    model = models.get_model(name, num_classes=num_classes, stem=stem, **model_kw)
    config = dict(name="sgd", momentum=0.9, nesterov=True, weight_decay=5e-4)
    tx = optim.make_optimizer(ml_collections.ConfigDict(config), 0.1)
    init = jax.jit(make_init_state(model, tx, (size, size, 3)))
    key = jax.random.key(0)
    state = init.lower(key).compile(compiler_options=FAST_COMPILE)(key)  # not timed
    batch = dict(
        image=jax.random.normal(jax.random.key(1), (batch_size, size, size, 3), jnp.float32),
        label=jnp.arange(batch_size, dtype=jnp.int32) % num_classes,
    )
    step = jax.jit(classifier.make_train_step(model, tx), donate_argnums=(0,))
    compiled = step.lower(state, batch).compile()
    mem = compiled.memory_analysis()
    peak = (
        mem.argument_size_in_bytes
        + mem.output_size_in_bytes
        - mem.alias_size_in_bytes
        + mem.temp_size_in_bytes
    )
    info = dict(peak_bytes=int(peak), temp_bytes=int(mem.temp_size_in_bytes), flops=flops(compiled))
    return Stepper(compiled, state, batch), info


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=16, help="CIFAR batch (the recipe's is 128)")
    parser.add_argument("--batch-224", type=int, default=2, help="ImageNet batch")
    parser.add_argument("--repeats", type=int, default=3, help="0: no timing (FLOPs, memory)")
    parser.add_argument("--setups", nargs="+", choices=list(SETUPS), default=list(SETUPS))
    parser.add_argument("--models", nargs="+", default=["sdnet18", "sdnet18_all"])
    parser.add_argument("--width", type=int, default=64, help="first-stage channels (smoke tests)")
    parser.add_argument("--stage-sizes", type=int, nargs="+", default=None, help="e.g. 1 1 1 1")
    parser.add_argument("--json", default="bench_out/model_cost.json")
    args = parser.parse_args(argv)
    model_kw = dict(width=args.width)
    if args.stage_sizes:
        model_kw["stage_sizes"] = tuple(args.stage_sizes)

    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; model / {BASELINE} train step")
    print(
        f"{'setup':<9} {'N':>3} {'model':<13} {'time':>6} {'flops':>6} {'peak mem':>8} "
        f"{'temp mem':>8}   ({BASELINE}: ms, peak / temp MiB)"
    )
    rows = []
    for setup in args.setups:
        size, num_classes, stem = SETUPS[setup]
        batch = args.batch_224 if setup == "imagenet" else args.batch
        # compile the setup's steps two at a time (XLA compiles mostly on one thread)
        with ThreadPoolExecutor(max_workers=2) as pool:
            one = partial(
                build, size=size, num_classes=num_classes, stem=stem, batch_size=batch, **model_kw
            )
            (base, base_info), *others = pool.map(one, [BASELINE, *args.models])
        for name, (stepper, info) in zip(args.models, others, strict=True):
            if args.repeats > 0:
                ratio, _, t_base = median_ratio(stepper, base, (), args.repeats)
            else:  # compile only: FLOPs and memory at batches too large to time here
                ratio, t_base = None, None
            row = dict(setup=setup, batch=batch, model=name, time_ratio=ratio)
            timed = ratio is not None
            row.update(
                flops_ratio=info["flops"] / max(base_info["flops"], 1.0),
                peak_mem_ratio=info["peak_bytes"] / base_info["peak_bytes"],
                temp_mem_ratio=info["temp_bytes"] / max(base_info["temp_bytes"], 1),
                peak_bytes=info["peak_bytes"],
                temp_bytes=info["temp_bytes"],
                baseline_ms=1e3 * t_base if timed else None,
                baseline_peak_bytes=base_info["peak_bytes"],
                baseline_temp_bytes=base_info["temp_bytes"],
            )
            rows.append(row)
            time_cell = f"{ratio:6.2f}" if timed else f"{'-':>6}"
            ms = f"{1e3 * t_base:.0f}" if timed else "-"
            print(
                f"{setup:<9} {batch:>3} {name:<13} {time_cell} {row['flops_ratio']:6.2f} "
                f"{row['peak_mem_ratio']:8.2f} {row['temp_mem_ratio']:8.2f}   ({ms} ms, "
                f"{base_info['peak_bytes'] / 2**20:.0f} / {base_info['temp_bytes'] / 2**20:.0f} MiB)",
                flush=True,
            )
    result = dict(header(), repeats=args.repeats, model_kw=model_kw, rows=rows)
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
