"""A toy translation task for the demos (imported by the configs with ``load_toy_translation``): random source
sentences and their word-by-word translation under a fixed lexicon."""

from __future__ import annotations

import numpy as np

from returnn.datasets.base import DatasetSeq
from returnn.datasets.generating import GeneratingDataset


class ToyTranslationDataset(GeneratingDataset):
    """Random source sentences and their word-by-word translation under a fixed lexicon: articles vanish,
    compounds become two target words, an adjective directly before a noun goes after it."""

    n_articles, n_adjectives, n_nouns, n_compounds = 2, 6, 12, 3
    src_vocab = n_articles + n_adjectives + n_nouns
    tgt_vocab = n_adjectives + n_nouns + n_compounds

    def __init__(self, num_seqs: int = 1000, minlen: int = 4, maxlen: int = 12, **kwargs):
        super().__init__(input_dim=[self.src_vocab, 1], output_dim=self.tgt_vocab, num_seqs=num_seqs, **kwargs)
        self.minlen, self.maxlen = minlen, maxlen
        perm = np.random.RandomState(42).permutation(self.n_adjectives + self.n_nouns)
        self.lexicon = {self.n_articles + i: [int(perm[i])] for i in range(len(perm))}
        for k in range(self.n_compounds):  # the last nouns translate to two words
            self.lexicon[self.src_vocab - 1 - k].append(self.n_adjectives + self.n_nouns + k)
        self.labels = {"data": [f"s{i}" for i in range(self.src_vocab)],
                       "classes": [f"t{i}" for i in range(self.tgt_vocab)]}

    def is_adjective(self, word: int) -> bool:
        return self.n_articles <= word < self.n_articles + self.n_adjectives

    def generate_seq(self, seq_idx: int) -> DatasetSeq:
        length = self.random.randint(self.minlen, self.maxlen + 1)
        src = self.random.randint(0, self.src_vocab, size=length)
        src[0] = self.random.randint(self.n_articles, self.src_vocab)  # never an empty translation
        words = [int(w) for w in src if w >= self.n_articles]
        i = 0
        while i < len(words) - 1:
            if self.is_adjective(words[i]) and not self.is_adjective(words[i + 1]):
                words[i], words[i + 1] = words[i + 1], words[i]
                i += 1
            i += 1
        tgt = [t for w in words for t in self.lexicon[w]]
        return DatasetSeq(seq_idx, src.astype(np.int32), np.array(tgt, np.int32))
