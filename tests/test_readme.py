"""The README's drop-in example is a complete program: extracted from README.md and run."""

from __future__ import annotations

import os
import re

import numpy as np

from tests.helpers import ROOT, optimized_xla

MARKER = "<!-- drop-in example"


def drop_in_example() -> str:
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    assert text.count(MARKER) == 1
    match = re.match(r"[^\n]*\n```python\n(.*?)\n```", text[text.index(MARKER) :], re.S)
    assert match, "the marker must be followed by a python block"
    return match.group(1)


def test_the_drop_in_example_trains_and_beats_chance_in_evaluation_mode():
    code = drop_in_example()
    assert "project_dictionaries(" in code and '"power_iteration"' in code
    assert "momentum=0.9" in code
    namespace: dict = {"__name__": "readme_example"}
    with optimized_xla():  # 200 training steps
        exec(compile(code, "README.md (drop-in example)", "exec"), namespace)
    accuracy = namespace["accuracy"]
    assert accuracy[0.1] > 0.6, accuracy  # 10 classes: chance is 0.1
    assert namespace["recon_error"].shape == (297,)
    assert np.all(np.asarray(namespace["recon_error"]) > 0)
