"""Smoke tests of the cost benchmarks: each ``main()`` on tiny arguments writes finite, positive rows."""

import json
import math
import subprocess
import sys

import pytest

from benchmarks import backprop_memory, layer_cost, loop_overhead, model_cost, report

pytestmark = pytest.mark.slow  # the benchmark scripts


def _check_rows(path, keys):
    rows = json.loads(path.read_text())["rows"]
    assert rows
    for row in rows:
        assert keys <= set(row), sorted(keys - set(row))
        for key in keys:
            value = row[key]
            assert isinstance(value, int | float) and math.isfinite(value) and value > 0, (key, row)
    return rows


def test_layer_cost(tmp_path):
    out = tmp_path / "layer_cost.json"
    args = ["--batch", "2", "--iters", "1", "2", "--repeats", "1", "--shapes", "body16"]
    layer_cost.main([*args, "--json", str(out)])
    keys = {"K", "floor", "batch", "conv_fwd_ms", "conv_fwd_bwd_ms"}
    keys |= {
        f"{m}_{p}_{r}"
        for m in ("train", "eval")
        for p in ("fwd", "fwd_bwd")
        for r in ("ratio", "flops_ratio")
    }
    rows = _check_rows(out, keys)
    assert [row["K"] for row in rows] == [1, 2]


def test_model_cost(tmp_path):
    out = tmp_path / "model_cost.json"
    args = ["--batch", "2", "--repeats", "1", "--setups", "cifar", "--models", "sdnet18"]
    model_cost.main([*args, "--width", "4", "--stage-sizes", "1", "--json", str(out)])
    keys = {"time_ratio", "flops_ratio", "peak_mem_ratio", "temp_mem_ratio", "peak_bytes"}
    keys |= {"temp_bytes", "baseline_ms", "baseline_peak_bytes", "baseline_temp_bytes"}
    _check_rows(out, keys)


def test_backprop_memory(tmp_path):
    out = tmp_path / "backprop_memory.json"
    backprop_memory.main(
        ["--batch", "2", "--size", "8", "--channels", "4", "--iters", "1", "4", "--json", str(out)]
    )
    keys = {"K"} | {f"{m}_{s}" for m in backprop_memory.MODES for s in ("bytes", "ratio")}
    rows = _check_rows(out, keys)
    assert rows[1]["unrolled_bytes"] > rows[0]["unrolled_bytes"]
    assert rows[1]["implicit_ratio"] < rows[1]["unrolled_ratio"]


def test_solver_accuracy_and_report(tmp_path):
    # a subprocess: the benchmark enables float64 globally for its reference solution
    out = tmp_path / "solver_accuracy.json"
    args = ["--cases", "grey", "--crops", "2", "--size", "16", "--max-iters", "120"]
    args += ["--reference-iters", "120", "--json", str(out)]
    args += ["--solvers", "ours admm (fft)", "ours fista (fft)"]
    subprocess.run([sys.executable, "-m", "benchmarks.solver_accuracy", *args], check=True)
    (case,) = json.loads(out.read_text())["cases"]
    admm = next(r for r in case["rows"] if r["solver"] == "ours admm (fft)")
    assert admm["0.01"]["iters"] and admm["0.01"]["seconds"] > 0
    backprop_memory.main(["--batch", "2", "--size", "8", "--channels", "4", "--iters", "1", "2",
                          "--json", str(tmp_path / "backprop_memory.json")])  # fmt: skip
    text = report.main([str(tmp_path)])
    assert "**Solver time-to-accuracy**" in text
    assert "**Backprop memory vs K**" in text and "**Layer cost**" not in text
    assert text.count("\n| ours ") == 2


def test_loop_overhead(tmp_path):
    out = tmp_path / "loop_overhead.json"
    args = ["--datasets", "digits", "--augments", "cifar", "--batch", "16", "--seconds", "0.2"]
    args += ["--host-steps", "12", "--device-steps", "24", "--repeats", "1", "--json", str(out)]
    result = loop_overhead.main(args)
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    (host,) = result["host"]
    for key in ("grain_0_workers_examples_per_s", "grain_2_workers_examples_per_s",
                "device_path_host_examples_per_s", "in_step_input_cifar_examples_per_s"):  # fmt: skip
        assert math.isfinite(host[key]) and host[key] > 0, key
    (row,) = result["loop"]
    for key in ("bare_steps_per_s", "bare_with_input_steps_per_s", "loop_host_ratio",
                "loop_device_ratio", "loop_device_vs_bare_with_input"):  # fmt: skip
        assert math.isfinite(row[key]) and row[key] > 0, key
    assert "| digits | cifar |" in loop_overhead.markdown(result, ["cifar"])
