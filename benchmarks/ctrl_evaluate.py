"""Evaluates a trained CTRL run again, with evaluation options its training did not have.

    python -m benchmarks.ctrl_evaluate WORKDIR [--split test ...] [--set eval.FIELD=VALUE ...]
        [--data_dir DIR] [--step N]

Restores the run (``runs.load_ctrl``), sets the given ``config.eval`` fields (e.g.
``--set eval.fidelity_classifier_workdir=/runs/fm_resnet18`` to add a classifier's accuracy on X̂
beside X, ``--set eval.max_examples=10000``), checks them as training would, and runs the training
evaluation (``evaluation.ctrl.make_evaluate``) on each split. Prints one JSON line per split and
writes ``WORKDIR/evaluation.json`` (the splits' metrics, the step, the overrides); the figures go
to ``WORKDIR/images`` as in training.
"""

from __future__ import annotations

import argparse
import ast
import json
import os

import jax

from configs.common import set_fields
from sdnet_jax import cli, runs
from sdnet_jax.errors import UserError
from sdnet_jax.evaluation.ctrl import make_evaluate
from sdnet_jax.runs.validation import validate_fidelity_classifier


def _value(text: str):
    """A Python literal (``10000``, ``0.5``, ``'a'``), else the text itself (a path)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _overrides(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.startswith("eval."):
            raise ValueError(f"--set takes eval.FIELD=VALUE (a config.eval field), got {pair!r}.")
        out[key] = _value(value)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdir")
    parser.add_argument("--split", action="append", choices=["validation", "test"])
    parser.add_argument("--set", action="append", default=[], metavar="eval.FIELD=VALUE")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--step", type=int, default=None, help="a checkpoint (default: latest)")
    args = parser.parse_args(argv)
    workdir = cli.absolute_workdir(args.workdir)
    overrides = _overrides(args.set)
    which = "latest" if args.step is None else args.step
    config, encoder, decoder, state, info = runs.load_ctrl(
        workdir, which=which, data_dir=args.data_dir
    )
    try:
        set_fields(config, overrides)
    except KeyError as err:
        raise ValueError(f"--set: {err.args[0]}") from err
    validate_fidelity_classifier(config)
    evaluate = make_evaluate(config, info, runs.ctrl.make_closed_loop(encoder, decoder), workdir)
    results = {"step": int(jax.device_get(state.step)), "overrides": overrides}
    for split in args.split or ["test"]:
        results[split] = evaluate(state, split)
        print(json.dumps({"split": split, **results[split]}), flush=True)
    with open(os.path.join(workdir, "evaluation.json"), "w") as f:
        json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    try:
        main()
    except (UserError, ValueError) as err:  # a missing / wrong workdir, a bad --set
        cli.fail(err)
