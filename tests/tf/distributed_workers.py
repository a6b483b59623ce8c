"""Run as a script (by tests/tf/test_distributed.py): ``OUT_DIR INDEX PORT0 PORT1`` trains as worker INDEX of a
two-worker MultiWorkerMirroredStrategy cluster on localhost, ``OUT_DIR single`` the same in one process without a
strategy. Each writes to ``OUT_DIR/<INDEX or single>/`` and prints one JSON line."""

from __future__ import annotations

import json
import os
import sys

if sys.argv[2] != "single":  # before TensorFlow starts
    os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"localhost:{port}" for port in sys.argv[3:5]]},
                                          "task": {"type": "worker", "index": int(sys.argv[2])}})

from distributed_config import config  # noqa: E402
from returnn.tf.engine import Engine  # noqa: E402


def main(out_dir: str, name: str) -> None:
    overrides = {} if name == "single" else {"distributed": {"strategy": "multi_worker"}}
    engine = Engine(config(os.path.join(out_dir, name), **overrides))
    engine.train()
    print(json.dumps({"replicas": engine.strategy.num_replicas_in_sync if engine.strategy else 1,
                      "chief": engine.is_chief}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
