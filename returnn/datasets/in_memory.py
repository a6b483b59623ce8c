"""``InMemoryDataset``: the base of datasets that hold all their sequences as arrays in a list."""

from __future__ import annotations

from returnn.datasets.base import Dataset, SeqDict


class InMemoryDataset(Dataset):
    """Sequences in ``self._seqs`` (``{key: array}`` each) with tags in ``self._tags``; subclasses fill both."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._seqs: list[SeqDict] = []
        self._tags: list[str] = []

    def _num_corpus_seqs(self) -> int:
        return len(self._seqs)

    def _load_corpus_seq(self, corpus_idx: int) -> SeqDict:
        return self._seqs[corpus_idx]

    def _corpus_tag(self, corpus_idx: int) -> str:
        return self._tags[corpus_idx]

    def _corpus_seq_lens(self, corpus_idx: int) -> dict[str, int]:
        return {k: len(v) for k, v in self._seqs[corpus_idx].items()}
