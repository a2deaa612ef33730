"""What the input and the training loop cost the host, as ratios measured in one run.

1. **Host examples/s** per data set: the Grain loader's decoding (in the training process, and in
   1 / 2 worker processes) against the device loader's host work (``on_device.feed_iterator``:
   row indices, 64 steps at a time), with the device loader's one-time costs (decode the split, or
   load its cached ``.npz``) and, for context, the in-step input (``TrainInput.batch``: gather +
   augmentation, on this machine's device) per augmentation.
2. **Loop overhead**: steps/s of the real loop (:func:`sdnet_jax.train.loop.run`, its own logged
   ``steps_per_sec``, the first log interval, which compiles, left out) ÷ steps/s of the bare
   jitted train step on a batch already on the device — same model, batch and devices. The model is
   a linear classifier defined here, whose step costs far less than its input, so the ratio shows
   the host's overhead (goal >= 0.9). ``with input`` is the bare step with the in-step input of the
   device loader, the floor of the device-path loop.

    python -m benchmarks.loop_overhead [--data_dir DIR] [--datasets digits fashion_mnist]
        [--augments none cifar] [--batch 128] [--json bench_out/loop_overhead.json]

Data sets that are not prepared in ``--data_dir`` are skipped (``digits`` is embedded).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import tempfile
import time

import flax
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import header, write_json
from sdnet_jax.data import datasets, grain_pipeline, on_device, pixels
from sdnet_jax.data import input_pipeline as ip
from sdnet_jax.runtime import parallel
from sdnet_jax.train import loop

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
            logp = jax.nn.log_softmax(x @ w + b)
            return -jnp.mean(jnp.take_along_axis(logp, batch["label"][:, None], axis=1))

        loss, (gw, gb) = jax.value_and_grad(loss_fn, argnums=(0, 1))(state.w, state.b)
        new = LinearState(step=state.step + 1, w=state.w - lr * gw, b=state.b - lr * gb)
        return new, {"loss": loss, "grad_norm": jnp.sqrt(jnp.sum(gw**2) + jnp.sum(gb**2))}

    return init_state, train_step


def train_input(name, data_dir, augment, batch, pipeline, workers=0):
    return ip.train_input(
        name, data_dir=data_dir, validation_size=VALIDATION, image_size=None,
        global_batch_size=batch, seed=0, augment=augment, pipeline=pipeline,
        cache_dir=CACHE_FALLBACK, num_workers=workers,
    )  # fmt: skip


# ----------------------------------------------------------------------------- 1. host cost


def rate(iterator, examples: int, seconds: float, min_items: int = 3) -> float:
    """Examples/s of ``next(iterator)`` (``examples`` per item) over about ``seconds``."""
    next(iterator)
    count, start = 0, time.perf_counter()
    while count < min_items or time.perf_counter() - start < seconds:
        next(iterator)
        count += 1
    return count * examples / (time.perf_counter() - start)


def host_rows(name, data_dir, augments, batch, seconds):
    row = {"dataset": name, "batch": batch}
    kwargs = dict(data_dir=data_dir, global_batch_size=batch, seed=0, validation_size=VALIDATION)
    for workers in sorted({0, 1, 2}):
        it = grain_pipeline.train_iterator(name, num_workers=workers, **kwargs)
        row[f"grain_{workers}_workers_examples_per_s"] = rate(it, batch, seconds)
        del it
    info = ip.get_info(name, data_dir=data_dir, validation_size=VALIDATION)
    feeds = on_device.feed_iterator(info.num_train, global_batch_size=batch, seed=0)
    row["device_path_host_examples_per_s"] = rate(feeds, batch * on_device.STEPS_PER_FEED, seconds)
    row.update(device_costs(name, data_dir))
    for augment in augments:
        row[f"in_step_input_{augment}_examples_per_s"] = in_step_rate(
            train_input(name, data_dir, augment, batch, "device"), batch, seconds
        )
    print(json.dumps(row))
    return [row]


def device_costs(name, data_dir):
    """One-time decode (when not cached yet) and cached-load seconds of the device loader."""
    out = {}
    folder = on_device.cache_folder(name, data_dir, CACHE_FALLBACK)
    kwargs = dict(data_dir=data_dir, validation_size=VALIDATION, cache_dir=folder)
    cached = folder is not None and os.path.exists(
        on_device.cache_path(folder, name, VALIDATION, None)
    )
    start = time.perf_counter()
    on_device.load_train_arrays(name, **kwargs)
    out["decode_s" if not cached else "cached_load_s"] = time.perf_counter() - start
    start = time.perf_counter()
    on_device.load_train_arrays(name, **kwargs)
    out["cached_load_s"] = time.perf_counter() - start
    return out


def in_step_rate(device_input, batch, seconds):
    """Examples/s of the device loader's in-step input (gather + augmentation) alone."""
    mesh = parallel.data_mesh()
    resident = {k: jax.device_put(v, parallel.replicated(mesh))
                for k, v in device_input.resident.items()}  # fmt: skip
    feed = parallel.shard_batch(next(device_input.feeds(0)), mesh, feed_sharding(mesh))
    make = jax.jit(device_input.batch)
    jax.block_until_ready(make(resident, feed, 0))
    count, start = 0, time.perf_counter()
    while count < 16 or time.perf_counter() - start < seconds:
        out = make(resident, feed, count)
        count += 1
    jax.block_until_ready(out)
    return count * batch / (time.perf_counter() - start)


# ----------------------------------------------------------------------------- 2. loop overhead


def feed_sharding(mesh):
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, parallel.DATA_AXIS))


def bare_steps_per_s(init_state, train_step, batches, steps=2000):
    """Steps/s of the jitted step (state donated) cycling over batches already on the device."""
    mesh = parallel.data_mesh()
    state = jax.jit(init_state, out_shardings=parallel.replicated(mesh))(jax.random.key(0))
    step = jax.jit(train_step, donate_argnums=(0,))
    state, m = step(state, batches[0])
    jax.block_until_ready(m)
    start = time.perf_counter()
    for i in range(steps):
        state, m = step(state, batches[i % len(batches)])
    jax.block_until_ready((state, m))
    return steps / (time.perf_counter() - start)


def loop_steps_per_s(task, steps, log_every):
    """The loop's own logged steps/s (median over log lines, the first one left out)."""
    with tempfile.TemporaryDirectory() as workdir:
        task = dataclasses.replace(task, num_train_steps=steps)
        loop.run(
            task, workdir=workdir, config_json="{}", seed=0, log_every_steps=log_every,
            eval_every_steps=0, checkpoint_every_steps=10**9, max_to_keep=1,
        )  # fmt: skip
        lines = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    rates = [line["train/steps_per_sec"] for line in lines if "train/steps_per_sec" in line]
    return float(np.median(rates[1:]))


def _task(init_state, train_step, the_input, info, batch):
    def step(state, resident, feed):
        b = the_input.batch(resident, feed, state.step)
        x = pixels.normalised_from_unit(b["image"], jnp.asarray(info.mean), jnp.asarray(info.std))
        return train_step(state, {"image": x, "label": b["label"]})

    return loop.Task(
        init_state=init_state, train_step=step, train_feeds=the_input.feeds,
        resident=the_input.resident, steps_per_feed=the_input.steps_per_feed,
        evaluate=lambda state, split: {"loss": 0.0}, num_train_steps=1, examples_per_step=batch,
        selection_metric=None, eval_splits=("test",),
    )  # fmt: skip


def loop_rows(name, data_dir, augment, batch, host_steps, device_steps, repeats):
    info = ip.get_info(name, data_dir=data_dir, validation_size=VALIDATION)
    init_state, train_step = linear_task_parts(info.image_shape, info.num_classes)
    mesh = parallel.data_mesh()
    device = train_input(name, data_dir, augment, batch, "device")
    host = train_input(name, data_dir, augment, batch, "host")
    resident = {k: jax.device_put(v, parallel.replicated(mesh)) for k, v in device.resident.items()}
    feeds = device.feeds(0)
    feed = parallel.shard_batch(next(feeds), mesh, feed_sharding(mesh))
    make = jax.jit(device.batch)
    normalise = jax.jit(lambda x: pixels.normalised_from_unit(x, jnp.asarray(info.mean),
                                                              jnp.asarray(info.std)))  # fmt: skip
    batches = []
    for step in itertools.islice(itertools.count(), 8):
        b = make(resident, feed, step)
        batches.append({"image": normalise(b["image"]), "label": b["label"]})
    with_input = _task(init_state, train_step, device, info, batch).train_step
    rows = []
    for repeat in range(repeats):
        row = {"dataset": name, "augment": augment, "batch": batch, "repeat": repeat}
        row["bare_steps_per_s"] = bare_steps_per_s(init_state, train_step, batches)
        row["bare_with_input_steps_per_s"] = bare_steps_per_s(
            init_state, lambda s, f: with_input(s, resident, f), [feed]
        )
        row["loop_host_steps_per_s"] = loop_steps_per_s(
            _task(init_state, train_step, host, info, batch), host_steps, max(host_steps // 6, 1)
        )
        row["loop_host_ratio"] = row["loop_host_steps_per_s"] / row["bare_steps_per_s"]
        row["loop_device_steps_per_s"] = loop_steps_per_s(
            _task(init_state, train_step, device, info, batch), device_steps, device_steps // 6
        )
        row["loop_device_ratio"] = row["loop_device_steps_per_s"] / row["bare_steps_per_s"]
        row["loop_device_vs_bare_with_input"] = (
            row["loop_device_steps_per_s"] / row["bare_with_input_steps_per_s"]
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


def main(argv: list[str] | None = None) -> dict:
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
    args = parser.parse_args(argv)
    names = [n for n in args.datasets if prepared(n, args.data_dir)]
    skipped = sorted(set(args.datasets) - set(names))
    if skipped:
        print(f"not prepared in --data_dir={args.data_dir}, skipped: {skipped}")
    result = {**header(), "devices": jax.device_count(), "cpus": os.cpu_count()}
    result["host"] = [row for name in names
                      for row in host_rows(name, args.data_dir, args.augments, args.batch,
                                           args.seconds)]  # fmt: skip
    result["loop"] = [
        row
        for name in names
        for row in loop_rows(
            name, args.data_dir, args.augments[-1], args.batch, args.host_steps,
            args.device_steps, args.repeats,
        )
    ]  # fmt: skip
    for key in ("loop_host_ratio", "loop_device_ratio", "loop_device_vs_bare_with_input"):
        values = [r[key] for r in result["loop"] if key in r]
        if values:
            print(f"{key}: median {np.median(values):.3f}, min {min(values):.3f}, "
                  f"max {max(values):.3f}")  # fmt: skip
    write_json(args.json, result)
    print(markdown(result, args.augments))
    return result


def markdown(result: dict, augments=("none", "cifar")) -> str:
    """The README's tables of one run."""
    fmt = lambda v: "–" if v is None else (f"{v:,.0f}" if v >= 100 else f"{v:.2f}")
    lines = [
        f"jax {result['jax']} on {result['platform']} ({result['devices']} device(s), "
        f"{result['cpus']} CPUs), {result['date']}",
        "",
        "| data set | Grain, this process | Grain, 1 worker | Grain, 2 workers | device path "
        "host | "
        + " | ".join(f"in-step input, {a}" for a in augments)
        + " | decode once (s) | cached load (s) |",
        "|" + "---|" * (7 + len(augments)),
    ]
    for r in result["host"]:
        cells = [r.get(f"grain_{w}_workers_examples_per_s") for w in (0, 1, 2)]
        cells += [r.get("device_path_host_examples_per_s")]
        cells += [r.get(f"in_step_input_{a}_examples_per_s") for a in augments]
        cells += [r.get("decode_s"), r.get("cached_load_s")]
        lines.append(f"| {r['dataset']} | " + " | ".join(map(fmt, cells)) + " |")
    lines += [
        "",
        "| data set | augment | bare step/s | loop, Grain in this process / bare | bare step with "
        "the in-step input/s | loop device path / bare | loop device path / bare with input |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["loop"]:
        cells = [r.get(k) for k in ("bare_steps_per_s", "loop_host_ratio",
                 "bare_with_input_steps_per_s", "loop_device_ratio",
                 "loop_device_vs_bare_with_input")]  # fmt: skip
        lines.append(f"| {r['dataset']} | {r['augment']} | " + " | ".join(map(fmt, cells)) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
