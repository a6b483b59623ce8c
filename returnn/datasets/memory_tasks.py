"""Generated memory tasks over symbol strings: the XML modeling task."""

from __future__ import annotations

import numpy as np

from returnn.datasets.base import DatasetSeq, register_dataset
from returnn.datasets.generating import GeneratingDataset

_NAME_CHARS = "abcdefgh"


@register_dataset
class TaskXmlModelingDataset(GeneratingDataset):
    """The XML modeling memory task (Jozefowicz et al., 2015): a string of nested tags such as
    `` <ab><c></c></ab>``, one-hot over the 12 symbols `` <>/abcdefgh``. ``classes`` is, at each position, the
    next symbol where the stack of open tags makes it predictable, else a blank: ``<`` after a blank or ``>``,
    and after ``</`` the name of the tag to close, then ``>``. ``limit_stack_depth`` bounds the nesting."""

    SYMBOLS = " <>/" + _NAME_CHARS

    def __init__(self, limit_stack_depth: int = 4, num_seqs: int = 1000, **kwargs):
        super().__init__(input_dim=len(self.SYMBOLS), output_dim=len(self.SYMBOLS), num_seqs=num_seqs, **kwargs)
        self.limit_stack_depth = int(limit_stack_depth)
        self.labels = {"data": list(self.SYMBOLS), "classes": list(self.SYMBOLS)}

    def _random_xml(self) -> str:
        """A blank, then tags opened (names of 1-9 chars) and closed until the stack is empty again."""
        text, open_tags = " ", []
        while True:
            if not open_tags or (len(open_tags) < self.limit_stack_depth and self.random.rand() > 0.6):
                name = "".join(self.random.choice(list(_NAME_CHARS), size=self.random.randint(1, 10)))
                text += f"<{name}>"
                open_tags.append(name)
            else:
                text += f"</{open_tags.pop()}>"
            if not open_tags and self.random.rand() > 0.2:
                return text

    @classmethod
    def targets_for(cls, text: str) -> np.ndarray:
        """The predictable next symbol at each position of ``text`` (a blank where it is not predictable)."""
        out, open_tags, closing = [], [], None
        expect_tag = in_open_tag = False
        for pos, ch in enumerate(text):
            if ch in " >":
                out.append("<")
                expect_tag, in_open_tag, closing = True, False, None
            elif expect_tag:  # ch is "<": an opening or a closing tag follows
                out.append(" ")
                expect_tag = False
                if text[pos + 1:pos + 2] == "/":
                    closing = open_tags.pop()
            elif closing is not None:  # "/" or a char of the name being closed: its next char, then ">"
                out.append(cls._closing_next(text, pos, closing))
            else:  # a char of an opening tag's name: the name is not known yet
                out.append(" ")
                if not in_open_tag:
                    open_tags.append("")
                    in_open_tag = True
                open_tags[-1] += ch
        return np.array([cls.SYMBOLS.index(ch) for ch in out], dtype=np.int32)

    @staticmethod
    def _closing_next(text: str, pos: int, name: str) -> str:
        """In ``</name>`` at ``pos`` (the "/" or a name char): the next symbol, known from the open tag's name."""
        start = text.rindex("/", 0, pos + 1)
        done = pos - start  # name chars already read
        return name[done] if done < len(name) else ">"

    def generate_seq(self, seq_idx: int) -> DatasetSeq:
        text = self._random_xml()
        ids = np.array([self.SYMBOLS.index(ch) for ch in text])
        features = np.eye(len(self.SYMBOLS), dtype=np.float32)[ids]
        return DatasetSeq(seq_idx, features, self.targets_for(text))
