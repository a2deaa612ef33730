"""Hidden-feature visualisation entrypoint: ``python -m sdnet_jax.visualize --workdir=DIR``.

Maps the codes of chosen layers of the SDNet trained in ``--workdir`` back to the input (SDNet's
``visualize.py``; :mod:`sdnet_jax.evaluation.hidden_features`) and writes PNG grids to
``<workdir>/visualize`` and images to the run's TensorBoard, e.g.::

    python -m sdnet_jax.visualize --workdir=workdir/fm_sdnet18_all_noshortcut \\
        --layers=0:0,1:1,1:2,2:2,3:2 --num_images=10

Every layer of an -All model without shortcut can be inverted, only the stem (``0:0``) of any
other SDNet; a ResNet, or a layer the model cannot invert, is one ``FATAL ...`` line.
"""

from __future__ import annotations

from absl import app, flags, logging

from sdnet_jax import cli, workarounds
from sdnet_jax.errors import UserError
from sdnet_jax.evaluation import hidden_features
from sdnet_jax.runtime import metrics

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "the training run's directory (config.json, checkpoints)")
flags.DEFINE_string(
    "layers",
    "auto",
    "comma-separated stage:block pairs, 0:0 = the stem (SDNet shows 0:0,1:1,1:2,2:2,3:2); 'auto' ="
    " those of SDNet's layers this model has and can invert",
)
flags.DEFINE_integer("num_images", 10, "images shown: the first of the split, sorted by label")
flags.DEFINE_string("split", "test", "'test' or 'validation'")
flags.DEFINE_string("checkpoint", "best", "'best' (validation), 'latest' or a step number")
flags.DEFINE_string("output_dir", "", "'' = <workdir>/visualize")
flags.DEFINE_string("data_dir", "", "overrides the run's config.data.data_dir when set")
flags.DEFINE_integer("scale", 1, "PNG upscaling factor")
flags.mark_flags_as_required(["workdir"])


def main(argv: list[str]) -> None:
    """Flags -> :func:`hidden_features.visualize_checkpoint`; user errors are one line."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    workarounds.prefer_eigen_convolutions()
    metrics.quiet_library_logs()
    try:
        report = hidden_features.visualize_checkpoint(
            cli.absolute_workdir(FLAGS.workdir),
            layers=hidden_features.parse_layers(FLAGS.layers),
            num_images=FLAGS.num_images,
            split=FLAGS.split,
            checkpoint=FLAGS.checkpoint,
            output_dir=FLAGS.output_dir,
            data_dir=FLAGS.data_dir or None,
            scale=FLAGS.scale,
        )
    except (ValueError, UserError) as err:
        cli.fail(err)
    logging.info("wrote %s rows %s in %.0fs", FLAGS.output_dir or "visualize/", report["rows"],
                 report["elapsed_s"])  # fmt: skip


def cli_main() -> None:
    cli.run(main)


if __name__ == "__main__":
    cli_main()
