"""The tiny training config of the distributed checks (``distributed_two_cpus.py``, ``distributed_workers.py``)."""

from __future__ import annotations

import os

from returnn.config import Config


def config(out_dir: str, **overrides) -> Config:
    values = {
        "task": "train",
        "train": {"class": "Task12AXDataset", "num_seqs": 10, "fixed_random_seed": 3},
        "dev": {"class": "Task12AXDataset", "num_seqs": 7, "fixed_random_seed": 1},
        "num_inputs": 9, "num_outputs": 2,
        "batch_size": 1000, "max_seqs": 3,  # batches of 3, 3, 3, 1 sequences: uneven splits, an empty replica
        "network": {"hidden": {"class": "linear", "activation": "tanh", "n_out": 8, "from": "data", "L2": 0.01},
                    "aux": {"class": "softmax", "loss": "ce", "from": "hidden", "loss_scale": 0.5,
                            "target": "classes"},  # minimizes the sum over frames, RETURNN's default
                    "output": {"class": "softmax", "loss": "ce", "from": "hidden",
                               "loss_opts": {"use_normalized_loss": True}}},
        "adam": True, "learning_rate": 0.01, "gradient_clip_global_norm": 5.0, "gradient_noise": 0.01,
        "accum_grad_multiple_step": 2, "weight_decay": 0.001,
        "model": os.path.join(out_dir, "net"), "learning_rate_file": os.path.join(out_dir, "lr"),
        "num_epochs": 1, "log_verbosity": 3, "tensorboard": False,
    }
    values.update(overrides)
    return Config(values)
