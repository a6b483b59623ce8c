"""Run as a script (by tests/tf/test_distributed.py): the same training on one CPU and on two logical CPUs
(``... OUT_DIR gpu``: on one GPU and on two logical GPUs).

Two logical CPU devices must exist before TensorFlow runs any op, hence a process of its own. Prints one
JSON line with what the test compares.
"""

from __future__ import annotations

import json
import os
import sys

import tensorflow as tf

KIND = sys.argv[2] if len(sys.argv) > 2 else "cpu"  # "gpu": two logical GPUs on the first GPU (a device check)
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices(KIND.upper())[0],
    [tf.config.LogicalDeviceConfiguration(**({"memory_limit": 2048} if KIND == "gpu" else {}))] * 2)

from distributed_config import config  # noqa: E402  (after the device setup)
from returnn.lr_control import read_learning_rate_file  # noqa: E402
from returnn.tf import checkpoint as ckpt  # noqa: E402
from returnn.tf.engine import Engine  # noqa: E402
from returnn.tf.engine_tasks import run_eval  # noqa: E402


def train(out_dir: str, **overrides) -> tuple[int, dict, float]:
    """Train one epoch; returns the number of replicas, the params before training, and the largest difference
    between two replicas' copies of a variable after it."""
    engine = Engine(config(out_dir, **overrides))
    initial = {name: var.numpy() for name, var in engine.network.get_params().items()}
    engine.train()
    if engine.strategy is None:
        return 1, initial, 0.0
    copies = [[c.numpy() for c in engine.strategy.experimental_local_results(var)]
              for var in engine.checkpoint_variables().values()]
    spread = max(float(abs(c - cs[0]).max()) for cs in copies for c in cs)
    return engine.strategy.num_replicas_in_sync, initial, spread


def main(tmp_dir: str) -> None:
    single, dist = os.path.join(tmp_dir, "single"), os.path.join(tmp_dir, "dist")
    _, initial, _ = train(single)
    devices = [f"/{KIND}:0", f"/{KIND}:1"]
    replicas, initial_dist, spread = train(dist, distributed={"strategy": "mirrored", "devices": devices})
    params_single = ckpt.read_checkpoint(os.path.join(single, "net.001"))
    params_dist = ckpt.read_checkpoint(os.path.join(dist, "net.001"))
    eval_dist = run_eval(config(dist, task="eval", load_epoch=1))  # a single-device engine loads it
    print(json.dumps({
        "replicas": replicas, "spread": spread,
        "names_single": sorted(params_single), "names_dist": sorted(params_dist),
        "max_diff": {name: float(abs(params_single[name] - params_dist[name]).max()) for name in params_single},
        "init_diff": max(float(abs(initial[name] - initial_dist[name]).max()) for name in initial),
        "moved": min(float(abs(params_single[name] - initial[name]).max()) for name in initial),
        "scores_single": read_learning_rate_file(os.path.join(single, "lr"))[1].error,
        "scores_dist": read_learning_rate_file(os.path.join(dist, "lr"))[1].error,
        "eval_dist": eval_dist["dev"]["dev_score"]["cost:output"],
    }))


if __name__ == "__main__":
    main(sys.argv[1])
