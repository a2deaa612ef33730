"""Reconstruction of a data set a CTRL model was not trained on (``ctrl.transfer_reconstruction``).

    python -m benchmarks.ctrl_transfer WORKDIR [DATASET ...] [--data_dir DIR] [--max_examples N]
        [--classifier_workdir DIR]

For each DATASET (default ``digits``) prints the PSNR / MSE / SSIM of ``g(f(X))`` on its test split
(resized / converted to the model's input shape) beside the split's mean image's, and with
``--classifier_workdir`` (a classifier run on that DATASET; one DATASET only) its accuracy on X̂
beside X; writes ``WORKDIR/images/transfer_<DATASET>.png`` and ``WORKDIR/transfer.json``.
"""

from __future__ import annotations

import argparse
import json
import os

from sdnet_jax import cli
from sdnet_jax.errors import UserError
from sdnet_jax.evaluation import ctrl


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdir")
    parser.add_argument("datasets", nargs="*", default=["digits"])
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--max_examples", type=int, default=1000)
    parser.add_argument("--classifier_workdir", default=None)
    args = parser.parse_args(argv)
    if args.classifier_workdir and len(args.datasets) != 1:
        parser.error("--classifier_workdir classifies one DATASET: name exactly one.")
    args.workdir = cli.absolute_workdir(args.workdir)
    results = []
    for name in args.datasets:
        result = ctrl.transfer_reconstruction(
            args.workdir, name, data_dir=args.data_dir, max_examples=args.max_examples,
            classifier_workdir=args.classifier_workdir,
        )  # fmt: skip
        print(json.dumps(result), flush=True)
        results.append(result)
    with open(os.path.join(args.workdir, "transfer.json"), "w") as f:
        json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    try:
        main()
    except (UserError, ValueError) as err:  # a missing / wrong workdir, an unprepared data set
        cli.fail(err)
