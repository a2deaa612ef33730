"""Tests of the launch scripts under launch/.

Cloud and cluster commands (gcloud, sbatch, srun, scontrol) are never run for real: the scripts'
--dry-run output is checked, and the non-dry paths run against small fakes put first on PATH
that record their arguments (and, for srun, start the tasks as local processes). The local
multi-process launcher and the generated SLURM job really run the stand-in entrypoint
tests/launch/standin_entrypoint.py with 2 JAX processes on CPU (gloo collectives).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAUNCH = REPO / "launch"
SCRIPTS = ["tpu_vm.sh", "gpu_host.sh", "slurm.sh", "local.sh"]
STANDIN = "tests.launch.standin_entrypoint"
PY = sys.executable

# Zones look like us-central2-b / europe-west4-a: none may be written into a script.
ZONE_RE = re.compile(r"\b[a-z]+-[a-z]+\d+-[a-z]\b")

REQUIRED = {
    "tpu_vm.sh": ["--name", "--zone", "--workdir", "--git-url", "--local-path", "--pip-spec"],
    "gpu_host.sh": ["--workdir"],
    "slurm.sh": ["--nodes", "--workdir"],
    "local.sh": ["--num-processes", "--workdir"],
}


def run(args, *, env=None, timeout=60, cwd=REPO, check=False):
    proc = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=cwd,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def script(name):
    return str(LAUNCH / name)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_exe(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def base_env(**extra):
    env = dict(os.environ)
    for k in ("CUDA_VISIBLE_DEVICES", "XLA_FLAGS", "PYTHON"):
        env.pop(k, None)
    env.update(extra)
    return env


def read_records(workdir: Path, n: int) -> list[dict]:
    return [json.loads((workdir / "standin" / f"process_{i}.json").read_text()) for i in range(n)]


def check_agree(records: list[dict], n: int, devices_per_process: int = 1):
    assert [r["process_index"] for r in records] == list(range(n))
    total = sum((i + 1) * devices_per_process for i in range(n))
    for r in records:
        assert r["process_count"] == n
        assert r["local_device_count"] == devices_per_process
        assert r["device_count"] == n * devices_per_process
        assert r["platform"] == "cpu"
        assert r["allgather"] == list(range(1, n + 1))
        assert r["global_sum"] == total


# ---------------------------------------------------------------- every script


@pytest.mark.parametrize("name", SCRIPTS)
def test_scripts_are_executable_bash(name):
    path = LAUNCH / name
    assert os.access(path, os.X_OK), f"{name} is not executable"
    assert run(["bash", "-n", path]).returncode == 0


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_exits_0_and_names_required_arguments(name):
    proc = run([script(name), "--help"], check=True)
    assert proc.stdout.startswith("Usage:")
    for arg in REQUIRED[name]:
        assert arg in proc.stdout, f"{name} --help does not mention {arg}"
    assert "--dry-run" in proc.stdout


MISSING = [
    ("tpu_vm.sh", ["--zone", "z", "--workdir", "gs://b/x", "--local-path", "."], "--name"),
    ("tpu_vm.sh", ["--name", "t", "--workdir", "gs://b/x", "--local-path", "."], "--zone"),
    ("tpu_vm.sh", ["--name", "t", "--zone", "z", "--local-path", "."], "--workdir"),
    ("tpu_vm.sh", ["--name", "t", "--zone", "z", "--workdir", "gs://b/x"], "--git-url"),
    (
        "tpu_vm.sh",
        ["--name", "t", "--zone", "z", "--workdir", "gs://b/x", "--local-path", ".", "--create"],
        "--accelerator-type",
    ),
    (
        "tpu_vm.sh",
        ["--name", "t", "--zone", "z", "--workdir", "gs://b/x", "--local-path", "."],
        "--config",
    ),
    ("gpu_host.sh", ["--", "--config=c.py"], "--workdir"),
    ("gpu_host.sh", ["--workdir", "/tmp/w"], "--config"),
    ("slurm.sh", ["--workdir", "/tmp/w", "--", "--config=c.py"], "--nodes"),
    ("slurm.sh", ["--nodes", "2", "--", "--config=c.py"], "--workdir"),
    (
        "slurm.sh",
        ["--nodes", "2", "--workdir", "/w", "--per-gpu", "--config", "c"],
        "--gpus-per-node",
    ),
    ("local.sh", ["--workdir", "/tmp/w", "--", "--config=c.py"], "--num-processes"),
    ("local.sh", ["--num-processes", "2", "--", "--config=c.py"], "--workdir"),
    ("local.sh", ["--num-processes", "2", "--workdir", "/tmp/w"], "--config"),
]


@pytest.mark.parametrize(("name", "args", "missing"), MISSING)
def test_missing_required_argument_fails_naming_it(name, args, missing):
    proc = run([script(name), *args, "--dry-run"])
    assert proc.returncode != 0
    assert "missing required argument" in proc.stderr
    assert missing in proc.stderr
    assert proc.stdout == ""  # nothing printed as if it would run


@pytest.mark.parametrize("name", SCRIPTS)
def test_unknown_argument_fails(name):
    proc = run([script(name), "--no-such-flag"])
    assert proc.returncode != 0
    assert "--no-such-flag" in proc.stderr


@pytest.mark.parametrize("name", SCRIPTS)
def test_no_project_zone_or_credentials_in_scripts(name):
    text = (LAUNCH / name).read_text()
    assert not ZONE_RE.search(text), ZONE_RE.search(text)
    assert not re.search(r"--project[= ]+[a-z][a-z0-9-]{5,}", text)
    for word in (
        "GOOGLE_APPLICATION_CREDENTIALS",
        "service-account",
        "api_key",
        "token",
        "password",
    ):
        assert word.lower() not in text.lower(), word


# ---------------------------------------------------------------- tpu_vm.sh

TPU_ARGS = [
    "--name", "my-tpu", "--zone", "user-zone-9",
    "--git-url", "https://example.com/me/sdnet_jax.git", "--git-ref", "v0.1",
    "--workdir", "gs://my-bucket/runs/exp 1",
]  # fmt: skip


def gcloud_lines(stdout: str) -> list[list[str]]:
    return [shlex.split(line) for line in stdout.splitlines() if line.startswith("gcloud ")]


def test_tpu_vm_dry_run_full_pipeline():
    proc = run(
        [
            script("tpu_vm.sh"), *TPU_ARGS,
            "--create", "--accelerator-type", "v4-32", "--version", "some-runtime", "--spot",
            "--delete-after", "--env", "TF_CPP_MIN_LOG_LEVEL=2", "--dry-run",
            "--", "--config=configs/digits_sdnet.py", "--config.num_train_steps=5",
        ],
        check=True,
    )  # fmt: skip
    cmds = gcloud_lines(proc.stdout)
    assert [c[:5] for c in cmds] == [
        ["gcloud", "compute", "tpus", "tpu-vm", "create"],
        ["gcloud", "compute", "tpus", "tpu-vm", "ssh"],
        ["gcloud", "compute", "tpus", "tpu-vm", "ssh"],
        ["gcloud", "compute", "tpus", "tpu-vm", "delete"],
    ]
    create, setup, train, delete = cmds
    assert create[5] == "my-tpu"
    assert {"--accelerator-type=v4-32", "--version=some-runtime", "--spot"} <= set(create)
    for c in cmds:
        assert c[5] == "my-tpu"
        zones = [a for a in c if a.startswith("--zone")]
        assert zones == ["--zone=user-zone-9"]  # only the user's zone
        assert not any(a.startswith("--project") for a in c)  # none given, none invented
    for c in (setup, train):
        assert "--worker=all" in c
    assert "--quiet" in delete

    setup_cmd = next(a for a in setup if a.startswith("--command="))[len("--command=") :]
    assert "git clone https://example.com/me/sdnet_jax.git" in setup_cmd
    assert "fetch --quiet origin v0.1" in setup_cmd
    assert "pip install --upgrade 'jax[tpu]'" in setup_cmd
    assert run(["bash", "-n", "-c", setup_cmd]).returncode == 0

    train_cmd = next(a for a in train if a.startswith("--command="))[len("--command=") :]
    argv = shlex.split(train_cmd.split("&&", 1)[1])
    assert argv[:4] == ["TF_CPP_MIN_LOG_LEVEL=2", "python3", "-m", "sdnet_jax.main"]
    assert "--workdir=gs://my-bucket/runs/exp 1" in argv
    assert "--distributed" in argv
    assert argv[-2:] == ["--config=configs/digits_sdnet.py", "--config.num_train_steps=5"]


def test_tpu_vm_project_is_passed_only_when_given():
    proc = run(
        [
            script("tpu_vm.sh"),
            *TPU_ARGS,
            "--project",
            "users-proj",
            "--config",
            "c.py",
            "--dry-run",
        ],
        check=True,
    )
    cmds = gcloud_lines(proc.stdout)
    assert len(cmds) == 2
    for c in cmds:
        assert [a for a in c if a.startswith("--project")] == ["--project=users-proj"]


def test_tpu_vm_evaluate_needs_no_config_and_warns_on_local_workdir():
    args = [script("tpu_vm.sh"), "--name", "t", "--zone", "z", "--skip-setup"]
    proc = run([*args, "--workdir", "/local/dir", "--module", "sdnet_jax.evaluate", "--dry-run"])
    assert proc.returncode == 0, proc.stderr
    assert "warning" in proc.stderr and "gs://" in proc.stderr
    (cmd,) = gcloud_lines(proc.stdout)
    assert "python3 -m sdnet_jax.evaluate --workdir=/local/dir --distributed" in cmd[-1]


def test_tpu_vm_runs_gcloud_for_real_with_a_fake_gcloud(tmp_path):
    """The non-dry path: tar of a local checkout, scp + ssh to all workers, delete after a failure."""
    fake = tmp_path / "bin"
    fake.mkdir()
    record = tmp_path / "gcloud_calls.jsonl"
    write_exe(
        fake / "gcloud",
        f"""#!{PY}
import json, subprocess, sys, tarfile
args = sys.argv[1:]
with open({str(record)!r}, "a") as f:
    f.write(json.dumps(args) + "\\n")
if args[3] == "scp":
    with tarfile.open(args[4]) as t:
        names = t.getnames()
    with open({str(record)!r}, "a") as f:
        f.write(json.dumps({{"tar": names}}) + "\\n")
for a in args:
    if a.startswith("--command="):
        subprocess.run(["bash", "-n", "-c", a[len("--command="):]], check=True)
        if " -m sdnet_jax.main " in a:
            sys.exit(7)  # the training run fails
""",
    )
    src = tmp_path / "src"
    (src / "sdnet_jax").mkdir(parents=True)
    (src / "sdnet_jax" / "__init__.py").write_text("")
    (src / ".venv").mkdir()
    (src / ".venv" / "big").write_text("x")
    proc = run(
        [
            script("tpu_vm.sh"), "--name", "t1", "--zone", "zz", "--local-path", src,
            "--venv", "~/venv", "--workdir", "gs://b/r", "--delete-after", "--", "--config=c.py",
        ],
        env=base_env(PATH=f"{fake}:{os.environ['PATH']}", TMPDIR=str(tmp_path)),
    )  # fmt: skip
    assert proc.returncode == 7, proc.stderr  # the run's status, after deleting
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    verbs = [c[3] if isinstance(c, list) else "tar" for c in calls]
    assert verbs == ["scp", "tar", "ssh", "ssh", "delete"]
    assert "./sdnet_jax/__init__.py" in calls[1]["tar"]
    assert not any(".venv" in n for n in calls[1]["tar"])
    assert "--worker=all" in calls[0] and calls[0][5] == "t1:t1-src.tar.gz"
    assert '"$HOME"/venv/bin/python -m pip install "$HOME"/sdnet_jax' in calls[2][-1]
    assert "deleting the TPU VM anyway" in proc.stderr
    assert not list(tmp_path.glob("t1-src*"))  # local tarball cleaned up


def test_tpu_vm_stops_before_running_when_setup_fails(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    record = tmp_path / "calls"
    write_exe(fake / "gcloud", f'#!/bin/bash\necho "$4" >> {record}\n[ "$4" != ssh ]\n')
    proc = run(
        [script("tpu_vm.sh"), *TPU_ARGS, "--config", "c.py", "--delete-after"],
        env=base_env(PATH=f"{fake}:{os.environ['PATH']}"),
    )
    assert proc.returncode != 0
    assert record.read_text().split() == ["ssh", "delete"]


# ---------------------------------------------------------------- gpu_host.sh


def test_gpu_host_dry_run_passes_cuda_visible_devices_through():
    args = [script("gpu_host.sh"), "--workdir", "/data/run", "--python", "python3", "--dry-run"]
    proc = run([*args, "--", "--config=configs/x.py"], env=base_env(CUDA_VISIBLE_DEVICES="2,3"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        "CUDA_VISIBLE_DEVICES=2,3 python3 -m sdnet_jax.main --workdir=/data/run --config=configs/x.py"
    )
    proc = run([*args, "--gpus", "0", "--module", "sdnet_jax.evaluate"], env=base_env())
    assert proc.stdout.strip() == (
        "CUDA_VISIBLE_DEVICES=0 python3 -m sdnet_jax.evaluate --workdir=/data/run"
    )
    proc = run([*args, "--module", "sdnet_jax.evaluate"], env=base_env())
    assert "CUDA_VISIBLE_DEVICES" not in proc.stdout  # unset stays unset: JAX takes every GPU
    assert "--distributed" not in proc.stdout and "--num_processes" not in proc.stdout


def test_gpu_host_help_has_install_hint():
    assert 'pip install -U "jax[cuda12]"' in run([script("gpu_host.sh"), "--help"]).stdout


def test_gpu_host_runs_the_entrypoint(tmp_path):
    """Real run (on CPU here): one process, no multi-host flags, args passed through, log copied."""
    log = tmp_path / "logs" / "run.log"
    proc = run(
        [
            script("gpu_host.sh"), "--workdir", tmp_path, "--module", STANDIN, "--python", PY,
            "--log-file", log, "--", "--config.x=1",
        ],
        env=base_env(JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO)),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr + proc.stdout
    (rec,) = read_records(tmp_path, 1)
    assert rec["process_count"] == 1 and rec["extra_args"] == ["--config.x=1"]
    assert '"process_index": 0' in log.read_text()


# ---------------------------------------------------------------- slurm.sh

SLURM_ARGS = ["--nodes", "3", "--workdir", "/shared/runs/exp 1", "--partition", "gpu-part"]


def test_slurm_dry_run_prints_script_and_submits_nothing(tmp_path):
    proc = run(
        [
            script("slurm.sh"), *SLURM_ARGS, "--gpus-per-node", "8", "--time", "01:00:00",
            "--setup", "source ~/venv/bin/activate", "--chdir", tmp_path, "--dry-run",
            "--", "--config=configs/digits_sdnet.py", "--config.num_train_steps=5",
        ],
        env=base_env(PATH=f"/nonexistent:{os.environ['PATH']}"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for line in [
        "#!/bin/bash",
        "#SBATCH --nodes=3",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --gpus-per-node=8",
        "#SBATCH --partition=gpu-part",
        "#SBATCH --time=01:00:00",
        f"#SBATCH --chdir={tmp_path}",
        "source ~/venv/bin/activate",
        'COORDINATOR_HOST=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | sed -n 1p)',
        "srun --kill-on-bad-exit=1 bash -c '",
        "    --coordinator_address=$COORDINATOR_ADDRESS \\",
        "    --num_processes=$SLURM_NTASKS \\",
        "    --process_id=$SLURM_PROCID \\",
    ]:
        assert line in out.splitlines(), line
    assert (
        "' sdnet-task --workdir='/shared/runs/exp 1' --config=configs/digits_sdnet.py"
        " --config.num_train_steps=5" in out
    )
    assert re.search(r"^sbatch /\S+\.sbatch$", out, re.M)
    assert "--account" not in out and "--qos" not in out  # nothing the user did not ask for
    assert not (tmp_path / "slurm_logs").exists()  # dry run writes nothing
    body = out.split("(not written: --dry-run) ----\n", 1)[1]
    script_text = body.split("# ---- end of script")[0]
    assert run(["bash", "-n", "-c", script_text]).returncode == 0


def test_slurm_per_gpu_is_one_task_per_gpu():
    proc = run(
        [script("slurm.sh"), *SLURM_ARGS, "--gpus-per-node", "4", "--per-gpu", "--gres",
         "--module", "sdnet_jax.evaluate", "--dry-run"],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "#SBATCH --ntasks-per-node=4" in proc.stdout
    assert "#SBATCH --gres=gpu:4" in proc.stdout
    assert "SLURM_LOCALID" in proc.stdout


def slurm_fakes(tmp_path: Path) -> Path:
    fake = tmp_path / "bin"
    fake.mkdir()
    write_exe(
        fake / "sbatch",
        f'#!/bin/bash\necho "$@" > {tmp_path}/sbatch_args\necho "Submitted batch job 4242"\n',
    )
    write_exe(
        fake / "scontrol",
        '#!/bin/bash\n[ "$1 $2" = "show hostnames" ] && printf "127.0.0.1\\nnode2\\n"\n',
    )
    # srun: start SLURM_NTASKS local copies of the task with their SLURM_PROCID / SLURM_LOCALID
    write_exe(
        fake / "srun",
        """#!/bin/bash
while [[ $# -gt 0 && $1 == -* ]]; do shift; done
pids=()
for ((i = 0; i < SLURM_NTASKS; i++)); do
  SLURM_PROCID=$i SLURM_LOCALID=$i "$@" &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
exit $rc
""",
    )
    return fake


@pytest.mark.parametrize("per_gpu", [False, True], ids=["per-node", "per-gpu"])
def test_slurm_submits_and_the_generated_job_runs(tmp_path, per_gpu):
    """Submit with a fake sbatch, then run the written job script with fake srun/scontrol:
    2 real JAX processes (CPU) join through the coordinator address the script derives."""
    fake = slurm_fakes(tmp_path)
    workdir = tmp_path / "work dir"
    extra = ["--gpus-per-node", "2", "--per-gpu"] if per_gpu else []
    env = base_env(PATH=f"{fake}:{os.environ['PATH']}")
    proc = run(
        [
            script("slurm.sh"), "--nodes", "1" if per_gpu else "2", *extra, "--workdir", workdir,
            "--module", STANDIN, "--python", PY, "--port", free_port(), "--chdir", REPO,
            "--log-dir", tmp_path / "logs", "--", "--config.name=it's",
        ],
        env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Submitted batch job 4242" in proc.stdout
    job_script = Path((tmp_path / "sbatch_args").read_text().strip())
    assert job_script.parent == tmp_path / "logs" and job_script.is_file()

    env.update(
        SLURM_JOB_NODELIST="fake[1-2]", SLURM_NTASKS="2", SLURM_JOB_ID="4242",
        SLURM_JOB_NUM_NODES="2", JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO),
    )  # fmt: skip
    if per_gpu:
        env["CUDA_VISIBLE_DEVICES"] = "5,7"  # what SLURM gave the node: task i takes the i-th
    job = run(["bash", job_script], env=env, timeout=90)
    assert job.returncode == 0, job.stdout + job.stderr
    records = read_records(workdir, 2)
    check_agree(records, 2)
    for r in records:
        assert r["extra_args"] == ["--config.name=it's"]
        assert r["workdir"] == str(workdir)
    if per_gpu:
        assert [r["env"]["CUDA_VISIBLE_DEVICES"] for r in records] == ["5", "7"]


def test_slurm_without_sbatch_fails_clearly(tmp_path):
    env = base_env(PATH="/usr/bin:/bin")
    proc = run(
        [script("slurm.sh"), *SLURM_ARGS, "--chdir", tmp_path, "--", "--config=c.py"], env=env
    )
    if proc.returncode == 0:  # a real sbatch in /usr/bin: do not submit anything from a test
        pytest.skip("sbatch is installed in /usr/bin")
    assert "sbatch" in proc.stderr and "not found" in proc.stderr


# ---------------------------------------------------------------- local.sh


def test_local_dry_run_prints_one_command_per_process():
    proc = run(
        [
            script("local.sh"), "--num-processes", "3", "--workdir", "/tmp/w", "--port", "1234",
            "--devices-per-process", "2", "--python", "python3", "--module", "sdnet_jax.evaluate",
            "--dry-run", "--", "--config.eval.batch_size=8",
        ],
        env=base_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = [shlex.split(line) for line in proc.stdout.splitlines() if line.startswith("env ")]
    assert len(lines) == 3
    for i, argv in enumerate(lines):
        assert argv[:3] == ["env", "JAX_PLATFORMS=cpu", "JAX_CPU_COLLECTIVES_IMPLEMENTATION=gloo"]
        assert "XLA_FLAGS=--xla_force_host_platform_device_count=2" in argv
        k = argv.index("python3")
        assert argv[k:] == [
            "python3", "-m", "sdnet_jax.evaluate", "--workdir=/tmp/w",
            "--coordinator_address=127.0.0.1:1234", "--num_processes=3", f"--process_id={i}",
            "--config.eval.batch_size=8", ">", f"/tmp/w/logs/process_{i}.log", "2>&1", "&",
        ]  # fmt: skip


def test_local_gs_workdir_needs_a_log_dir():
    proc = run([script("local.sh"), "--num-processes", "2", "--workdir", "gs://b/x",
                "--module", STANDIN, "--dry-run"])  # fmt: skip
    assert proc.returncode != 0 and "--log-dir" in proc.stderr


def test_local_two_processes_agree(tmp_path):
    """The real thing: 2 JAX processes on CPU, 2 devices each, gloo cross-process collectives."""
    workdir = tmp_path / "run"
    t0 = time.monotonic()
    proc = run(
        [
            script("local.sh"), "--num-processes", "2", "--devices-per-process", "2",
            "--workdir", workdir, "--module", STANDIN, "--python", PY, "--timeout", "90",
            "--", "--config.num_train_steps=5", "--config.name=a b",
        ],
        env=base_env(),
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    records = read_records(workdir, 2)
    check_agree(records, 2, devices_per_process=2)
    for r in records:
        assert r["extra_args"] == ["--config.num_train_steps=5", "--config.name=a b"]
        assert r["cpu_collectives"] == "gloo"
        assert r["env"]["JAX_CPU_COLLECTIVES_IMPLEMENTATION"] == "gloo"
        assert r["env"]["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2"
    for i in range(2):
        assert f'"process_index": {i}' in (workdir / "logs" / f"process_{i}.log").read_text()
    assert time.monotonic() - t0 < 90


def test_local_one_failure_stops_the_others(tmp_path):
    """Process 1 dies after joining; process 0 would wait in a collective: it must be killed and
    the launcher must exit with process 1's status."""
    workdir = tmp_path / "run"
    t0 = time.monotonic()
    proc = run(
        [
            script("local.sh"), "--num-processes", "2", "--workdir", workdir, "--module", STANDIN,
            "--python", PY, "--kill-grace", "1", "--timeout", "90", "--", "--fail_process=1",
        ],
        env=base_env(),
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert "process 1 exited with status 3" in proc.stderr
    assert "crashing on purpose" in proc.stderr  # tail of the failed process's log
    assert time.monotonic() - t0 < 60
    assert not (workdir / "standin").exists()
    left = run(["pgrep", "-f", f"--workdir={workdir}"])
    assert left.stdout.strip() == "", f"processes left behind: {left.stdout}"


def test_local_timeout_stops_everything(tmp_path):
    workdir = tmp_path / "run"
    t0 = time.monotonic()
    proc = run(
        [
            script("local.sh"), "--num-processes", "2", "--workdir", workdir, "--module", STANDIN,
            "--python", PY, "--timeout", "2", "--kill-grace", "1", "--", "--sleep=60",
        ],
        env=base_env(),
    )  # fmt: skip
    assert proc.returncode == 124, proc.stderr
    assert "timeout after 2s" in proc.stderr
    assert time.monotonic() - t0 < 30
