"""Experiment configs: one file per experiment, each with ``get_config(arg=None)``.

``arg='smoke'`` gives the tiny form of any experiment (a few steps of a narrow model), which the tests
reuse. Load them with ``--config=configs/<file>.py`` (absl ``config_flags``) from the repo root.
"""
