import os
import subprocess
import sys

from sdnet_jax import workarounds


def test_conftest_set_the_cpu_convolution_flag():
    assert workarounds.EIGEN_CONVOLUTIONS in os.environ["XLA_FLAGS"]


def _flags_after_call(env_flags: str, compute_first: bool) -> str:
    code = (
        "import os, warnings, jax.numpy as jnp\n"
        "from sdnet_jax import workarounds\n"
        + ("jnp.ones(1).block_until_ready()\n" if compute_first else "")
        + "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    done = workarounds.prefer_eigen_convolutions()\n"
        "print(done, len(w), os.environ.get('XLA_FLAGS', ''))\n"
    )
    env = {**os.environ, "XLA_FLAGS": env_flags}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_prefer_eigen_convolutions_adds_once_and_respects_the_user():
    assert _flags_after_call("", False) == f"True 0 {workarounds.EIGEN_CONVOLUTIONS}"
    user = "--xla_cpu_experimental_ynn_fusion_type=dot"
    assert _flags_after_call(user, False) == f"False 0 {user}"
    # too late once a backend runs: a warning, flags unchanged
    assert _flags_after_call("", True) == "False 1"
