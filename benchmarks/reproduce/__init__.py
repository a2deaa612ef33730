"""The papers' claims at their own width on whatever devices JAX sees, as one prepared,
time-boxed command that reports as it goes.

    python -m benchmarks.reproduce --out=DIR [--smoke] [--budget_s=N] [--data_dir=D]
        [--parts=loop,accuracy,robustness,ctrl,layer] [--workdir_root=W]

Five parts, in order of value; each gets a share of ``--budget_s`` (what one leaves unused goes
to the ones after it), and ``DIR/report.json`` and ``DIR/report.md`` are written again after each
part, so a run cut short keeps what it finished. ``report.json`` has the keys ``device`` (jax,
jaxlib, CUDA, Python, device names) and one per part, each with a ``status``: ``done``,
``cut ...`` (the budget ran out: what was measured is kept), ``skipped: why`` or
``failed: error``.

* ``loop`` — real-loop steps/s ÷ bare-step steps/s for ResNet-18, SDNet-18 and SDNet-18-All
  (width 64, batch 128, Fashion-MNIST at 32 px) and both CTRL pairs (the reference recipe,
  batch 2048). The bare step is the loop's own jitted program run back to back on device-resident
  inputs, with no host work (the persistent compilation cache makes it the same compiled
  program); the ratio is what the host costs (goal >= 0.9). The in-step input (gather + augment)
  is timed alone beside it.
* ``accuracy`` — SDNet-18 vs ResNet-18 at width 64 on Fashion-MNIST 32 px with the same schedule,
  as many epochs as fit in the part's budget (from the loop part's measured speed): test
  accuracy, final and best-on-validation (goal: SDNet within 0.5 points).
* ``robustness`` — :func:`sdnet_jax.evaluation.robustness.evaluate_checkpoint` on those two
  models (noise severities, the stem's λ sweep, the adaptive rule, PGD).
* ``ctrl`` — the CTRL reference recipe (``configs/ctrl_fashion_mnist_reference_{csc,dcgan}.py``,
  batch 2048, 4500 steps) for as many steps as the budget leaves, with test PSNR, the
  mean-image PSNR, the spread of X̂ and nearest-subspace accuracy at a few points of the run.
* ``layer`` — ``CSCConv`` against SDNet's PyTorch layer (:mod:`benchmarks.torch_reference`),
  eager and ``torch.compile``d, when PyTorch with CUDA is importable (skipped otherwise).

``--smoke`` runs every part at toy size (width 4, tiny batches, a few steps) on data it writes
itself — scikit-learn's digits resized to 28 x 28 in the decoded-arrays format of
Fashion-MNIST — so the code path of a real run is exercised on a CPU in about two minutes; the
test suite runs it. ``--data_dir`` must hold Fashion-MNIST, as TFDS files or as decoded arrays
(``python -m sdnet_jax.data.prepare fashion_mnist --format=arrays``: 30 MB, all a host without
internet needs). Runs' workdirs go to ``--workdir_root`` (default ``DIR/runs``), compiled
programs to ``<workdir_root>/xla_cache``.
"""

PARTS = ("loop", "accuracy", "robustness", "ctrl", "layer")
