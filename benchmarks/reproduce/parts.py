"""The suite's five parts. Each is ``part(ctx, deadline) -> result`` (a JSON-able dict with a
``status``), stays inside its ``deadline`` (a :func:`time.monotonic` value) as far as the
programs it compiles allow, and calls ``ctx.progress(result)`` when it has something worth keeping
should the run be killed before it returns."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from benchmarks.reproduce import plan
from sdnet_jax.evaluation import robustness
from sdnet_jax.runs.common import restore_state
from sdnet_jax.runtime import parallel
from sdnet_jax.train import classifier, ctrl, inputs, loop


@dataclasses.dataclass
class Context:
    """What the parts share: the scale, the data, where runs go, and the results so far."""

    scale: plan.Scale
    data_dir: str
    workdir_root: str
    results: dict[str, Any]
    progress: Callable[[dict[str, Any]], None] = lambda result: None

    @property
    def data(self) -> dict:
        """The data fields of every run's config (:func:`plan.data_fields`)."""
        return plan.data_fields(self.data_dir, os.path.join(self.workdir_root, "data_cache"))

    def workdir(self, name: str) -> str:
        """A fresh workdir for one run."""
        path = os.path.join(self.workdir_root, name)
        shutil.rmtree(path, ignore_errors=True)
        return path


def _left(deadline: float) -> float:
    return deadline - time.monotonic()


def _clamp(value: float, bounds: tuple[int, int]) -> int:
    return int(min(max(value, bounds[0]), bounds[1]))


def _metric_lines(workdir: str) -> list[dict[str, float]]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def _loop_job(ctx: Context, name: str):
    """``(training module, config)`` of a loop-part model name: a CTRL pair's config is the ctrl
    part's (so its step is compiled once for both parts); a classifier's schedule is long enough
    for any loop measurement (its accuracy runs have their own)."""
    if name.startswith("ctrl_"):
        return ctrl, plan.ctrl_config(name[len("ctrl_") :], ctx.scale, ctx.data)
    longest = ctx.scale.loop_steps[1] + 1
    return classifier, plan.classifier_config(name, ctx.scale, ctx.data, num_train_steps=longest)


# ----------------------------------------------------------------------------- loop


def _timed_steps(program: loop.Program, state, acc, arrays, feed, steps: int):
    start = time.perf_counter()
    for _ in range(steps):
        state, acc = program.step(state, acc, arrays, feed)
    jax.block_until_ready((state, acc))
    return state, acc, time.perf_counter() - start


def measure_loop(ctx: Context, name: str, until: float) -> dict[str, Any]:
    """One model: the loop's program back to back (bare) and the real loop, for about
    ``ctx.scale.loop_seconds`` each (fewer when ``until`` comes sooner)."""
    job, config = _loop_job(ctx, name)
    workdir = ctx.workdir(f"loop_{name}")
    task = dataclasses.replace(
        job.make_task(config, workdir),
        evaluate=lambda state, split: {},
        eval_splits=("test",),
        selection_metric=None,
        summaries=None,
    )
    row: dict[str, Any] = {"model": name, "batch": config.batch_size}
    mesh = parallel.data_mesh()
    key = jax.random.key(config.seed)
    sharding = parallel.tree_replicated(jax.eval_shape(task.init_state, key), mesh)
    start = time.perf_counter()
    state = jax.jit(task.init_state, out_shardings=sharding)(key)
    program = loop.compile_program(task, mesh, sharding)
    resident = loop.place_resident(task, mesh)
    feed = parallel.shard_batch(next(task.train_feeds(0)), mesh, program.feed_sharding)
    acc = program.accumulator(state, resident, feed)()
    state, acc, _ = _timed_steps(program, state, acc, resident, feed, 1)
    row["first_step_s"] = time.perf_counter() - start  # compile included
    seconds = min(ctx.scale.loop_seconds, max(_left(until), 0.0) / 3)
    state, acc, elapsed = _timed_steps(program, state, acc, resident, feed, 3)
    steps = _clamp(seconds * 3 / elapsed, ctx.scale.loop_steps)
    state, acc, elapsed = _timed_steps(program, state, acc, resident, feed, steps)
    row["bare_steps_per_s"] = steps / elapsed
    # the in-step input alone: gather (device path) + augmentation of the same feed
    train_input = inputs.training_input(config, job.validate_config(config), workdir)
    row["input_path"] = train_input.pipeline
    batch = jax.jit(train_input.batch)
    jax.block_until_ready(batch(resident, feed, 0))
    start = time.perf_counter()
    jax.block_until_ready([batch(resident, feed, i) for i in range(steps)])
    row["input_ms"] = 1e3 * (time.perf_counter() - start) / steps
    del state, acc, resident
    steps = _clamp(row["bare_steps_per_s"] * seconds, ctx.scale.loop_steps)
    steps = min(steps, task.num_train_steps - 1)
    log_every = max(steps // 6, 1)
    loop.run(
        task, workdir=workdir, config_json=config.to_json_best_effort(), seed=config.seed,
        log_every_steps=log_every, eval_every_steps=0, checkpoint_every_steps=10**9,
        max_to_keep=1, stop_after_steps=steps,
    )  # fmt: skip
    rates = [line["train/steps_per_sec"] for line in _metric_lines(workdir)]
    row["loop_steps"] = steps
    row["loop_steps_per_s"] = float(np.median(rates[1:] if len(rates) > 1 else rates))
    row["ratio"] = row["loop_steps_per_s"] / row["bare_steps_per_s"]
    row["examples_per_s"] = row["loop_steps_per_s"] * config.batch_size
    return row


def loop_part(ctx: Context, deadline: float) -> dict[str, Any]:
    names = [*plan.CLASSIFIERS, *(f"ctrl_{pair}" for pair in plan.CTRL_PAIRS)]
    result: dict[str, Any] = {"status": "running", "goal": ">= 0.9", "rows": []}
    for i, name in enumerate(names):
        left = _left(deadline)
        if left < 2 * ctx.scale.loop_seconds and i > 0:
            result["status"] = f"cut after {i} of {len(names)} models (budget)"
            return result
        result["rows"].append(measure_loop(ctx, name, time.monotonic() + left / (len(names) - i)))
        ctx.progress(result)
    result["status"] = "done"
    return result


# ----------------------------------------------------------------------------- accuracy


def _classifier_test(config, workdir: str) -> dict[str, Any]:
    """Test accuracy of a cut run's best-on-validation checkpoint (else its latest)."""
    task = classifier.make_task(config, workdir)
    state = restore_state(workdir, config, task.init_state, "best", "validation_accuracy")
    return {"step": int(jax.device_get(state.step)), **task.evaluate(state, "test")}


def accuracy_part(ctx: Context, deadline: float) -> dict[str, Any]:
    models = ("resnet18", "sdnet18")
    loop_rows = {r["model"]: r for r in ctx.results.get("loop", {}).get("rows", [])}
    probe = plan.classifier_config(models[0], ctx.scale, ctx.data)
    info = classifier.validate_config(probe)
    steps_per_epoch = math.ceil(info.num_train / probe.batch_size)
    rates = [loop_rows[m]["loop_steps_per_s"] for m in models if m in loop_rows]
    per_model = _left(deadline) / len(models)
    if len(rates) == len(models):
        train_s = per_model - ctx.scale.compile_allowance_s
        epochs = math.floor(train_s * min(rates) / steps_per_epoch)
    else:  # no speed measured: one epoch
        epochs = 1
    epochs = min(max(epochs, 1), ctx.scale.max_epochs)
    total = epochs * steps_per_epoch
    eval_every = max(steps_per_epoch, total // 8)
    result: dict[str, Any] = {
        "status": "running", "epochs": epochs, "steps": total, "steps_per_epoch": steps_per_epoch,
        "batch": probe.batch_size,
        "eval_every_steps": eval_every, "chance": 1 / info.num_classes, "runs": {},
        "workdirs": {},
    }  # fmt: skip
    for i, model in enumerate(models):
        config = plan.classifier_config(
            model, ctx.scale, ctx.data, num_epochs=float(epochs), num_train_steps=-1,
            eval_every_steps=eval_every, checkpoint_every_steps=10**9, log_every_steps=50,
        )  # fmt: skip
        workdir = ctx.workdir(f"accuracy_{model}")
        start = time.perf_counter()
        until = time.monotonic() + _left(deadline) / (len(models) - i)
        out = classifier.train_and_evaluate(config, workdir, deadline=until)
        run: dict[str, Any] = {"wall_s": time.perf_counter() - start}
        if out.get("interrupted"):
            run["status"] = f"cut at step {out['step']} of {total}"
            run["best_test"] = _classifier_test(config, workdir)
        else:
            run["status"] = "done"
            run["final_test_accuracy"] = out["final"]["test"]["accuracy"]
            best = out.get("best", {})
            run["best_step"] = best.get("step")
            run["best_validation_accuracy"] = best.get("validation", {}).get("accuracy")
            run["best_test"] = {"step": best.get("step"), **best.get("test", {})}
        rates = [line["train/steps_per_sec"] for line in _metric_lines(workdir)
                 if "train/steps_per_sec" in line]  # fmt: skip
        run["steps_per_s"] = float(np.median(rates[1:])) if len(rates) > 1 else None
        result["runs"][model] = run
        result["workdirs"][model] = workdir
        ctx.progress(result)
    accs = {m: result["runs"][m]["best_test"].get("accuracy") for m in models}
    if None not in accs.values():
        gap = 100 * (accs["sdnet18"] - accs["resnet18"])
        result["sdnet_minus_resnet_points"] = gap
        result["goal_within_0_5_points"] = bool(gap >= -0.5)
    statuses = [result["runs"][m]["status"] for m in models]
    result["status"] = (
        "done"
        if all(s == "done" for s in statuses)
        else "; ".join(f"{m}: {s}" for m, s in zip(models, statuses, strict=True))
    )
    return result


# ----------------------------------------------------------------------------- robustness


def _robustness_summary(report: dict[str, Any]) -> dict[str, Any]:
    """Clean accuracy, mean accuracy per corruption at the trained λ, per λ, the adaptive rule,
    PGD: the few numbers of a robustness report worth a table."""
    records = report["corruption_accuracy"]
    clean = next(r["accuracy"] for r in records if r["corruption"] == "clean")
    per_corruption = {}
    for r in records:
        if r["corruption"] != "clean":
            per_corruption.setdefault(r["corruption"], []).append(r["accuracy"])
    out = {
        "checkpoint_step": report["checkpoint_step"],
        "clean_accuracy": clean,
        "mean_accuracy_by_corruption": {k: float(np.mean(v)) for k, v in per_corruption.items()},
    }
    sweep = report.get("lam_sweep")
    if sweep:
        by_lam = {}
        for r in sweep["records"]:
            if r["lam"] is not None and r["corruption"] != "clean":
                by_lam.setdefault(r["lam"], []).append(r["accuracy"])
        out["mean_corrupted_accuracy_by_lam"] = {
            str(k): float(np.mean(v)) for k, v in by_lam.items()
        }
    if report.get("adaptive") and "mean_test_accuracy" in report["adaptive"]:
        out["adaptive_mean_test_accuracy"] = report["adaptive"]["mean_test_accuracy"]
    if report.get("pgd"):
        out["pgd"] = [
            {k: r[k] for k in ("norm", "epsilon", "lam", "accuracy")}
            for r in report["pgd"]["records"]
        ]
    return out


def _sdnet_summary(report: dict[str, Any]) -> dict[str, Any]:
    """Mean test accuracy per noise family over its levels: at the trained λ, and for a CSC
    model the oracle's (best λ per level, chosen on the test labels: labelled so) and the
    line's (fitted on validation, applied per input) where it ran."""
    trained: dict[str, list[float]] = {}
    for r in report["records"]:
        if r["lam"] is None:
            trained.setdefault(r["noise"], []).append(r["accuracy"])
    out: dict[str, Any] = {
        "checkpoint_step": report["checkpoint_step"],
        "bn_recalibration": report["bn_recalibration"],
        "trained_lam": {k: float(np.mean(v)) for k, v in trained.items()},
    }
    if report.get("oracle"):
        oracle: dict[str, list[float]] = {}
        for r in report["oracle"]["rows"]:
            oracle.setdefault(r["noise"], []).append(r["accuracy"])
        out["oracle_best_lam_on_test_labels"] = {k: float(np.mean(v)) for k, v in oracle.items()}
        out["oracle_best_lams"] = [
            [r["noise"], r["level"], r["best_lam"]] for r in report["oracle"]["rows"]
        ]
    line = report.get("line") or {}
    if "mean_test_accuracy" in line:
        out["line_mean_test_accuracy_over_cells"] = line["mean_test_accuracy"]
    return out


def _sdnet_protocol(
    workdir: str, scale: plan.Scale, deadline: float, last_wall: float
) -> dict[str, Any]:
    """SDNet's protocol on one classifier: with running batch-norm statistics, then, as time
    allows, with the stem's batch norm re-estimated per (noise, level, λ) (for a ResNet the
    control's baseline: what re-estimating the stem's statistics alone gives without a λ)."""
    runs: dict[str, Any] = {}
    variants = [("running_statistics", {"bn_recalibration_examples": 0})]
    variants.append(("stem_bn_re_estimated", {"bn_recalibration_scope": "stem"}))
    for name, fields in variants:
        if _left(deadline) < last_wall:
            runs[name] = {"status": "skipped: budget"}
            continue
        e = robustness.default_eval_config()
        plan.set_fields(e, scale.sdnet_protocol, checkpoint="best", protocol="sdnet", **fields)
        e.output_dir = os.path.join(workdir, f"sdnet_protocol_{name}")
        start = time.perf_counter()
        report = robustness.evaluate_checkpoint(workdir, e)
        runs[name] = {"status": "done", "wall_s": time.perf_counter() - start,
                      **_sdnet_summary(report)}  # fmt: skip
    return runs


def robustness_part(ctx: Context, deadline: float) -> dict[str, Any]:
    workdirs = ctx.results.get("accuracy", {}).get("workdirs", {})
    if not workdirs:
        return {"status": "skipped: needs the models of the accuracy part"}
    result: dict[str, Any] = {"status": "running", "models": {}}
    last_wall = 0.0
    for i, (model, workdir) in enumerate(workdirs.items()):
        if i > 0 and _left(deadline) < 0.5 * last_wall:  # the next one would run far past it
            result["status"] = f"cut after {i} of {len(workdirs)} models (budget)"
            return result
        e = robustness.default_eval_config()
        plan.set_fields(e, ctx.scale.robustness, checkpoint="best")
        start = time.perf_counter()
        report = robustness.evaluate_checkpoint(workdir, e)
        entry = {"wall_s": time.perf_counter() - start, **_robustness_summary(report)}
        result["models"][model] = entry
        ctx.progress(result)
        entry["sdnet_protocol"] = _sdnet_protocol(workdir, ctx.scale, deadline, entry["wall_s"])
        last_wall = time.perf_counter() - start
        ctx.progress(result)
    result["status"] = "done"
    return result


# ----------------------------------------------------------------------------- ctrl


CTRL_POINT_KEYS = (
    "psnr", "psnr_mean_image", "spread_x_hat", "spread_x", "nearest_subspace_accuracy",
)  # fmt: skip


def _points(workdir: str) -> list[dict[str, float]]:
    rows = []
    for line in _metric_lines(workdir):
        if "test/psnr" in line:
            rows.append({"step": line["step"], **{k: line[f"test/{k}"] for k in CTRL_POINT_KEYS}})
    return rows


def ctrl_part(ctx: Context, deadline: float) -> dict[str, Any]:
    loop_rows = {r["model"]: r for r in ctx.results.get("loop", {}).get("rows", [])}
    result: dict[str, Any] = {"status": "running", "runs": {}}
    for i, pair in enumerate(plan.CTRL_PAIRS):
        per_run = _left(deadline) / (len(plan.CTRL_PAIRS) - i)
        config = plan.ctrl_config(pair, ctx.scale, ctx.data)
        total = config.num_train_steps
        rate = loop_rows.get(f"ctrl_{pair}", {}).get("loop_steps_per_s")
        expected = total if rate is None else rate * (per_run - ctx.scale.compile_allowance_s)
        expected = min(max(int(expected), config.log_every_steps), total)
        every = config.log_every_steps
        config.eval_every_steps = max(every, (expected // 3) // every * every)
        config.checkpoint_every_steps = config.eval_every_steps
        workdir = ctx.workdir(f"ctrl_{pair}")
        task = dataclasses.replace(ctrl.make_task(config, workdir), eval_splits=("test",))
        start = time.perf_counter()
        out = loop.run_with_config(task, config, workdir, deadline=time.monotonic() + per_run)
        run: dict[str, Any] = {"batch": config.batch_size, "steps_planned": total}
        if out.get("interrupted"):
            run["status"] = f"cut at step {out['step']} of {total}"
            state = restore_state(workdir, config, task.init_state, "latest")
            run["last"] = {"step": out["step"], **task.evaluate(state, "test")}
        else:
            run["status"] = "done"
            run["last"] = {"step": total, **out["final"]["test"]}
        run["wall_s"] = time.perf_counter() - start
        run["points"] = _points(workdir)
        if not run["points"] or run["points"][-1]["step"] != run["last"]["step"]:
            run["points"].append({"step": run["last"]["step"],
                                  **{k: run["last"][k] for k in CTRL_POINT_KEYS}})  # fmt: skip
        result["runs"][pair] = run
        ctx.progress(result)
    statuses = [result["runs"][p]["status"] for p in plan.CTRL_PAIRS]
    result["status"] = (
        "done"
        if all(s == "done" for s in statuses)
        else "; ".join(f"{p}: {s}" for p, s in zip(plan.CTRL_PAIRS, statuses, strict=True))
    )
    return result


# ----------------------------------------------------------------------------- layer


def layer_part(ctx: Context, deadline: float) -> dict[str, Any]:
    try:
        import torch
    except ImportError as error:
        return {"status": f"skipped: PyTorch is not importable ({error})"}
    if not torch.cuda.is_available() or jax.default_backend() != "gpu":
        return {"status": "skipped: needs PyTorch with CUDA and JAX on the GPU"}
    from benchmarks.reproduce import layer

    return layer.compare(ctx.scale.layer_batch, deadline, ctx.progress)


PARTS = {
    "loop": loop_part,
    "accuracy": accuracy_part,
    "robustness": robustness_part,
    "ctrl": ctrl_part,
    "layer": layer_part,
}
