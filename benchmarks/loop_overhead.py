"""What the input pipeline and the training loop cost the host, as ratios measured in one run.

1. **Host examples/s** per data set and augmentation: the per-example host pipeline
   (``input_pipeline.train_iterator``: read, decode, augment, normalise in one Python thread)
   against the on-device path's host work (``on_device.feed_iterator``: the per-step records), with
   the device path's one-time costs (decode the split, or load its cached ``.npz``) and, for
   context, the in-step gather + augmentation run alone on this machine's device.
2. **Loop overhead**: steps/s of the real loop (:func:`sdnet_jax.train.loop.run`, its own logged
   ``steps_per_sec``, the first log interval, which compiles, left out) ÷ steps/s of the bare
   jitted train step on a batch already on the device — same model, batch and devices. The model
   is a linear classifier defined here, whose step costs far less than its input, so the ratio
   shows the host's overhead (goal >= 0.9). ``gather`` is the bare step with the device path's
   in-step gather + augmentation, the floor of the device-path loop.

    python -m benchmarks.loop_overhead [--data_dir DIR] [--datasets digits fashion_mnist]
        [--augments none cifar] [--batch 128] [--json bench_out/loop_overhead.json]

Data sets that are not prepared in ``--data_dir`` are skipped (``digits`` is embedded). The
module runs against an older checkout too (no ``on_device``): then only the host rows are
measured, which is how the "before" numbers of the README were taken.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import flax
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import header, write_json
from sdnet_jax.data import datasets
from sdnet_jax.data import input_pipeline as ip
from sdnet_jax.runtime import parallel
from sdnet_jax.train import loop

try:
    from sdnet_jax.data import grain_pipeline, on_device
except ImportError:  # a checkout from before the device path
    grain_pipeline = on_device = None

VALIDATION = 0
CACHE_FALLBACK = os.path.join(tempfile.gettempdir(), "sdnet_jax_loop_overhead_cache")


@flax.struct.dataclass
class LinearState:
    step: jax.Array
    w: jax.Array
    b: jax.Array


def linear_task_parts(image_shape, num_classes: int, lr: float = 0.01):
    dim = int(np.prod(image_shape))

    def init_state(key):
        return LinearState(
            step=jnp.zeros((), jnp.int32),
            w=0.01 * jax.random.normal(key, (dim, num_classes)),
            b=jnp.zeros((num_classes,)),
        )

    def train_step(state, batch):
        x = batch["image"].reshape(batch["image"].shape[0], -1)

        def loss_fn(w, b):
            logits = x @ w + b
            logp = jax.nn.log_softmax(logits)
            return -jnp.mean(jnp.take_along_axis(logp, batch["label"][:, None], axis=1))

        loss, (gw, gb) = jax.value_and_grad(loss_fn, argnums=(0, 1))(state.w, state.b)
        new = LinearState(step=state.step + 1, w=state.w - lr * gw, b=state.b - lr * gb)
        return new, {"loss": loss, "grad_norm": jnp.sqrt(jnp.sum(gw**2) + jnp.sum(gb**2))}

    return init_state, train_step


# ----------------------------------------------------------------------------- 1. host cost


def rate(iterator, batch: int, seconds: float, min_batches: int = 3) -> float:
    """Examples/s of ``next(iterator)`` over about ``seconds`` (after one warm-up batch)."""
    next(iterator)
    count, start = 0, time.perf_counter()
    while count < min_batches or time.perf_counter() - start < seconds:
        next(iterator)
        count += 1
    return count * batch / (time.perf_counter() - start)


def host_rows(name, data_dir, augments, batch, seconds):
    rows = []
    for augment in augments:
        host = ip.train_iterator(
            name, data_dir=data_dir, global_batch_size=batch, seed=0, augment=augment,
            validation_size=VALIDATION, process_index=0, process_count=1,
        )  # fmt: skip
        row = {"dataset": name, "augment": augment, "batch": batch}
        row["host_examples_per_s"] = rate(host, batch, seconds)
        if on_device is not None:
            info = ip.get_info(name, data_dir=data_dir, validation_size=VALIDATION)
            feeds = on_device.feed_iterator(
                info.num_train, global_batch_size=batch, seed=0, process_index=0, process_count=1
            )
            steps = on_device.STEPS_PER_FEED  # one feed holds the row indices of this many steps
            row["device_path_host_examples_per_s"] = rate(feeds, batch * steps, seconds)
            row["device_vs_host"] = (
                row["device_path_host_examples_per_s"] / row["host_examples_per_s"]
            )
            row.update(device_costs(name, data_dir, augment, batch, seconds))
        if grain_pipeline is not None and name != "digits":
            for workers in sorted({1, 2, os.cpu_count() or 1}):
                grain_it = grain_pipeline.train_iterator(
                    name, data_dir=data_dir, global_batch_size=batch, seed=0, augment=augment,
                    validation_size=VALIDATION, process_index=0, process_count=1,
                    num_workers=workers,
                )  # fmt: skip
                row[f"grain_{workers}_workers_examples_per_s"] = rate(grain_it, batch, seconds)
                del grain_it
        rows.append(row)
        print(json.dumps(row))
    return rows


def cache_dir_of(name, data_dir):
    """Where training caches the decoded split (the TFDS folder), else a folder of this run."""
    if name == "digits":
        return None
    return on_device.default_cache_dir(name, data_dir) or CACHE_FALLBACK


def device_costs(name, data_dir, augment, batch, seconds):
    """One-time decode (when not cached yet) / cached-load seconds, and the in-step gather +
    augment examples/s."""
    out = {}
    cache_dir = cache_dir_of(name, data_dir)
    kwargs = dict(data_dir=data_dir, validation_size=VALIDATION, cache_dir=cache_dir)
    cached = cache_dir is not None and os.path.exists(
        on_device.cache_path(cache_dir, name, VALIDATION, None)
    )
    start = time.perf_counter()
    on_device.load_train_arrays(name, **kwargs)
    out["decode_s" if not cached else "cached_load_s"] = time.perf_counter() - start
    start = time.perf_counter()
    on_device.load_train_arrays(name, **kwargs)
    out["cached_load_s"] = time.perf_counter() - start
    arrays = on_device.train_arrays(
        name, data_dir=data_dir, validation_size=VALIDATION, image_size=None, seed=0,
        augment=augment, cache_dir=cache_dir,
    )  # fmt: skip
    mesh = parallel.data_mesh()
    placed = {k: parallel.shard_rows(v, mesh) for k, v in arrays.arrays.items()}
    make = jax.jit(arrays.make_batch)
    feeds = on_device.feed_iterator(len(arrays.arrays["label"]), global_batch_size=batch, seed=0)
    feed = parallel.shard_batch(next(feeds), mesh, feed_sharding(mesh))
    jax.block_until_ready(make(placed, feed, 0))
    count, start = 0, time.perf_counter()
    while count < 16 or time.perf_counter() - start < seconds:
        out_batch = make(placed, feed, count)
        count += 1
    jax.block_until_ready(out_batch)
    out["in_step_gather_augment_examples_per_s"] = count * batch / (time.perf_counter() - start)
    return out


# ----------------------------------------------------------------------------- 2. loop overhead


def feed_sharding(mesh):
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, parallel.DATA_AXIS))


def bare_steps_per_s(init_state, train_step, batches, make_batch=None, placed=None, steps=2000):
    """Steps/s of the jitted step (state donated) on batches already on the device; with
    ``make_batch``, ``batches`` is one feed and the step gathers + augments its batch."""
    mesh = parallel.data_mesh()
    state = jax.jit(init_state, out_shardings=parallel.replicated(mesh))(jax.random.key(0))
    if make_batch is None:
        step = jax.jit(train_step, donate_argnums=(0,))
        call = lambda s, i: step(s, batches[i % len(batches)])
    else:
        step = jax.jit(
            lambda s, arrays, feed: train_step(s, make_batch(arrays, feed, s.step)),
            donate_argnums=(0,),
        )
        call = lambda s, i: step(s, placed, batches)
    state, m = call(state, 0)
    jax.block_until_ready(m)
    start = time.perf_counter()
    for i in range(steps):
        state, m = call(state, i)
    jax.block_until_ready((state, m))
    return steps / (time.perf_counter() - start)


def loop_steps_per_s(task_kwargs, steps, log_every):
    """The loop's own logged steps/s (median over log lines, the first one left out)."""
    with tempfile.TemporaryDirectory() as workdir:
        task = loop.Task(
            evaluate=lambda state, split: {"loss": 0.0},
            num_train_steps=steps,
            selection_metric=None,
            eval_splits=("test",),
            **task_kwargs,
        )
        loop.run(
            task, workdir=workdir, config_json="{}", seed=0, log_every_steps=log_every,
            eval_every_steps=0, checkpoint_every_steps=10**9, max_to_keep=1,
        )  # fmt: skip
        lines = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    rates = [line["train/steps_per_sec"] for line in lines if "train/steps_per_sec" in line]
    return float(np.median(rates[1:]))


def loop_rows(name, data_dir, augment, batch, host_steps, device_steps, repeats):
    info = ip.get_info(name, data_dir=data_dir, validation_size=VALIDATION)
    init_state, train_step = linear_task_parts(info.image_shape, info.num_classes)
    mesh = parallel.data_mesh()
    host_it = ip.train_iterator(
        name, data_dir=data_dir, global_batch_size=batch, seed=0, augment=augment,
        validation_size=VALIDATION, process_index=0, process_count=1,
    )  # fmt: skip
    host_batches = [parallel.shard_batch(next(host_it), mesh) for _ in range(8)]

    def host_iterator(start_step):
        return ip.train_iterator(
            name, data_dir=data_dir, global_batch_size=batch, seed=0, augment=augment,
            validation_size=VALIDATION, start_step=start_step,
        )  # fmt: skip

    common = dict(init_state=init_state, train_step=train_step, examples_per_step=batch)
    rows = []
    arrays = None
    if on_device is not None:
        arrays = on_device.train_arrays(
            name, data_dir=data_dir, validation_size=VALIDATION, image_size=None, seed=0,
            augment=augment, cache_dir=cache_dir_of(name, data_dir),
        )  # fmt: skip
        placed = {k: parallel.shard_rows(v, mesh) for k, v in arrays.arrays.items()}
        feeds = on_device.feed_iterator(
            len(arrays.arrays["label"]), global_batch_size=batch, seed=0
        )
        one_feed = parallel.shard_batch(next(feeds), mesh, feed_sharding(mesh))

        def feed_iterator(start_step):
            return on_device.feed_iterator(
                len(arrays.arrays["label"]), global_batch_size=batch, seed=0, start_step=start_step
            )

    for repeat in range(repeats):
        row = {"dataset": name, "augment": augment, "batch": batch, "repeat": repeat}
        row["bare_steps_per_s"] = bare_steps_per_s(init_state, train_step, host_batches)
        row["loop_host_steps_per_s"] = loop_steps_per_s(
            dict(common, train_batches=host_iterator), host_steps, max(host_steps // 6, 1)
        )
        row["loop_host_ratio"] = row["loop_host_steps_per_s"] / row["bare_steps_per_s"]
        if arrays is not None:
            row["bare_gather_steps_per_s"] = bare_steps_per_s(
                init_state, train_step, one_feed, arrays.make_batch, placed
            )
            row["loop_device_steps_per_s"] = loop_steps_per_s(
                dict(common, train_batches=feed_iterator, train_arrays=arrays),
                device_steps,
                device_steps // 6,
            )
            row["loop_device_ratio"] = row["loop_device_steps_per_s"] / row["bare_steps_per_s"]
            row["loop_device_vs_bare_gather"] = (
                row["loop_device_steps_per_s"] / row["bare_gather_steps_per_s"]
            )
        rows.append(row)
        print(json.dumps(row))
    return rows


def prepared(name: str, data_dir: str | None) -> bool:
    try:
        datasets.open_splits(name, data_dir)
        return True
    except datasets.DatasetNotFoundError:
        return False


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--datasets", nargs="+", default=["digits", "fashion_mnist"])
    parser.add_argument("--augments", nargs="+", default=["none", "cifar"])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=3.0, help="per host-rate measurement")
    parser.add_argument("--host-steps", type=int, default=300)
    parser.add_argument("--device-steps", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default="bench_out/loop_overhead.json")
    args = parser.parse_args()
    names = [n for n in args.datasets if prepared(n, args.data_dir)]
    skipped = sorted(set(args.datasets) - set(names))
    if skipped:
        print(f"not prepared in --data_dir={args.data_dir}, skipped: {skipped}")
    result = {**header(), "devices": jax.device_count(), "cpus": os.cpu_count()}
    result["device_path"] = on_device is not None
    result["host"] = [
        row for name in names for row in host_rows(name, args.data_dir, args.augments, args.batch,
                                                   args.seconds)
    ]  # fmt: skip
    result["loop"] = [
        row
        for name in names
        for row in loop_rows(
            name, args.data_dir, args.augments[-1], args.batch, args.host_steps,
            args.device_steps, args.repeats,
        )
    ]  # fmt: skip
    for key in ("loop_host_ratio", "loop_device_ratio"):
        values = [r[key] for r in result["loop"] if key in r]
        if values:
            print(f"{key}: median {np.median(values):.3f}, min {min(values):.3f}, "
                  f"max {max(values):.3f}")  # fmt: skip
    write_json(args.json, result)
    print(markdown(result))


def markdown(result: dict) -> str:
    """The README's tables of one run."""
    fmt = lambda v: "–" if v is None else (f"{v:,.0f}" if v >= 100 else f"{v:.2f}")
    lines = [
        f"jax {result['jax']} on {result['platform']} ({result['devices']} device(s), "
        f"{result['cpus']} CPUs), {result['date']}",
        "",
        "| data set | augment | host path examples/s | Grain, 1 worker | Grain, 2 workers | device "
        "path host examples/s | in-step gather + augment examples/s | decode once (s) | cached "
        "load (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["host"]:
        grain = [r.get(f"grain_{w}_workers_examples_per_s") for w in (1, 2)]
        cells = [r.get("host_examples_per_s"), *grain, r.get("device_path_host_examples_per_s"),
                 r.get("in_step_gather_augment_examples_per_s"), r.get("decode_s"),
                 r.get("cached_load_s")]  # fmt: skip
        lines.append(f"| {r['dataset']} | {r['augment']} | " + " | ".join(map(fmt, cells)) + " |")
    lines += [
        "",
        "| data set | augment | bare step/s | loop host path / bare | bare step with in-step "
        "gather/s | loop device path / bare | loop device path / bare with gather |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["loop"]:
        cells = [r.get(k) for k in ("bare_steps_per_s", "loop_host_ratio", "bare_gather_steps_per_s",
                 "loop_device_ratio", "loop_device_vs_bare_gather")]  # fmt: skip
        lines.append(f"| {r['dataset']} | {r['augment']} | " + " | ".join(map(fmt, cells)) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
