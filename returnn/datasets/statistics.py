"""Statistics of a dataset's epoch: lengths per key, class counts of sparse keys, mean/std of dense keys."""

from __future__ import annotations

import dataclasses

import numpy as np

from returnn.datasets.base import Dataset


@dataclasses.dataclass
class KeyStatistics:
    """Accumulated statistics of one data key."""

    key: str
    sparse: bool
    dim: int
    lengths: list[int] = dataclasses.field(default_factory=list)
    class_counts: np.ndarray | None = None
    feature_sum: np.ndarray | None = None
    feature_sq_sum: np.ndarray | None = None

    def add(self, array: np.ndarray) -> None:
        """Account one sequence's array."""
        self.lengths.append(len(array))
        if self.sparse:
            if self.class_counts is None:
                self.class_counts = np.zeros(max(self.dim, 1), dtype=np.int64)
            counts = np.bincount(array.astype(np.int64).ravel(), minlength=len(self.class_counts))
            if len(counts) > len(self.class_counts):
                self.class_counts = np.pad(self.class_counts, (0, len(counts) - len(self.class_counts)))
            self.class_counts[: len(counts)] += counts
        elif array.size:
            frames = array.reshape(len(array), -1).astype(np.float64)
            if self.feature_sum is None:
                self.feature_sum, self.feature_sq_sum = np.zeros(frames.shape[1]), np.zeros(frames.shape[1])
            self.feature_sum += frames.sum(axis=0)
            self.feature_sq_sum += (frames**2).sum(axis=0)

    def summary(self) -> dict:
        """Figures of this key: seqs, frames, min/mean/max length, and mean/std or top classes."""
        lens = np.array(self.lengths or [0])
        out = {"seqs": len(self.lengths), "frames": int(lens.sum()), "min_len": int(lens.min()),
               "mean_len": float(lens.mean()), "max_len": int(lens.max())}
        if self.class_counts is not None:
            out["num_classes_seen"] = int((self.class_counts > 0).sum())
            out["top_classes"] = [(int(i), int(self.class_counts[i])) for i in np.argsort(-self.class_counts)[:5]
                                  if self.class_counts[i] > 0]
        if self.feature_sum is not None and out["frames"]:
            mean = self.feature_sum / out["frames"]
            out["mean"] = float(mean.mean())
            out["std"] = float(np.sqrt(np.maximum(self.feature_sq_sum / out["frames"] - mean**2, 0)).mean())
        return out


def collect_statistics(dataset: Dataset, *, epoch: int = 1, max_seqs: int | None = None) -> dict[str, dict]:
    """Statistics per data key over (the first ``max_seqs`` sequences of) ``epoch``."""
    dataset.init_seq_order(epoch=epoch)
    stats = {k: KeyStatistics(k, dataset.is_data_sparse(k), dataset.get_data_dim(k)) for k in dataset.get_data_keys()}
    seq_idx = 0
    while dataset.is_less_than_num_seqs(seq_idx) and (max_seqs is None or seq_idx < max_seqs):
        dataset.load_seqs(seq_idx, seq_idx + 1)
        for key, acc in stats.items():
            acc.add(dataset.get_data(seq_idx, key))
        seq_idx += 1
    return {key: acc.summary() for key, acc in stats.items()}
