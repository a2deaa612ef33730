"""Stand-in for the sdnet_jax entrypoints, used to exercise the launch scripts.

It takes the same command line as ``python -m sdnet_jax.main`` / ``sdnet_jax.evaluate``
(``--workdir``, the multi-host flags, anything else is recorded), joins the JAX cluster the
same way, runs two cross-process collectives and writes what it saw to
``<workdir>/standin/process_<i>.json``.

Testing hooks: ``--fail_process=I`` makes process I crash (``os._exit(3)``) right after
joining the cluster, ``--raise_process=I`` makes it raise an exception instead, ``--sleep=S``
waits S seconds before anything else.

  python -m tests.launch.standin_entrypoint --workdir=/tmp/x \
      --coordinator_address=127.0.0.1:12345 --num_processes=2 --process_id=0
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def _parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--workdir", required=True)
    p.add_argument("--coordinator_address")
    p.add_argument("--num_processes", type=int)
    p.add_argument("--process_id", type=int)
    p.add_argument("--distributed", action="store_true")
    p.add_argument("--fail_process", type=int, default=-1)
    p.add_argument("--raise_process", type=int, default=-1)
    p.add_argument("--sleep", type=float, default=0.0)
    return p.parse_known_args(argv)


def main(argv: list[str] | None = None) -> int:
    args, extra = _parse(sys.argv[1:] if argv is None else argv)
    time.sleep(args.sleep)

    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.experimental import multihost_utils
    from jax.sharding import NamedSharding, PartitionSpec

    if args.distributed:
        jax.distributed.initialize()
    elif args.coordinator_address is not None:
        jax.distributed.initialize(
            coordinator_address=args.coordinator_address,
            num_processes=args.num_processes,
            process_id=args.process_id,
        )

    me = jax.process_index()
    if me == args.fail_process:
        print(f"process {me}: crashing on purpose", flush=True)
        os._exit(3)
    if me == args.raise_process:
        raise RuntimeError(f"process {me}: raising on purpose")

    # 1) host-level all-gather of one number per process
    gathered = multihost_utils.process_allgather(np.asarray(me + 1, np.int32))

    # 2) a global array: each process contributes its local shard, a jitted sum reduces over
    #    every device of every process.
    mesh = jax.make_mesh((jax.device_count(),), ("d",))
    local = np.full((jax.local_device_count(),), me + 1, np.float32)
    garr = jax.make_array_from_process_local_data(NamedSharding(mesh, PartitionSpec("d")), local)
    total = jax.jit(jnp.sum, out_shardings=NamedSharding(mesh, PartitionSpec()))(garr)
    total = float(np.asarray(total.addressable_data(0)))
    multihost_utils.sync_global_devices("standin_done")

    record = {
        "process_index": me,
        "process_count": jax.process_count(),
        "device_count": jax.device_count(),
        "local_device_count": jax.local_device_count(),
        "platform": jax.devices()[0].platform,
        "allgather": np.asarray(gathered).reshape(-1).tolist(),
        "global_sum": total,
        "workdir": args.workdir,
        "extra_args": extra,
        "env": {
            k: os.environ.get(k)
            for k in (
                "JAX_PLATFORMS",
                "JAX_CPU_COLLECTIVES_IMPLEMENTATION",
                "XLA_FLAGS",
                "CUDA_VISIBLE_DEVICES",
            )
        },
        "cpu_collectives": jax.config.jax_cpu_collectives_implementation,
    }
    out_dir = os.path.join(args.workdir, "standin")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f"process_{me}.json"), "w") as f:
        json.dump(record, f, indent=1)
    print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
