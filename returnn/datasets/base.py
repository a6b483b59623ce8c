"""The ``Dataset`` base class with RETURNN's scripting API, per-epoch ordering and the sequence cache.

A subclass describes a *corpus* (a fixed list of sequences, index ``0 .. N-1``) with a few hooks:
``_num_corpus_seqs``, ``_load_corpus_seq`` (or ``_load_corpus_seqs`` for bulk reads), optionally
``_corpus_tag`` and ``_corpus_seq_lens`` (cheap lengths for sorting and batching), and it sets
``num_outputs`` ({key: [dim, ndim]}), ``_dtypes`` ({key: dtype name}) and ``labels`` in ``__init__``.
The base class turns that into the per-epoch sequence list (``seq_ordering``, ``partition_epoch``,
``seq_list_filter_file``, ``fixed_random_subset``) that ``num_seqs``, ``get_data`` etc. index.
"""

from __future__ import annotations

import ast
import difflib
import inspect
from typing import Any, Sequence

import numpy as np

from returnn.datasets import seq_order
from returnn.datasets.text_files import read_text_lines
from returnn.errors import DatasetError
from returnn.log import logger

SeqDict = dict  # {data key: numpy array with time as first axis}


class DatasetSeq:
    """One generated sequence: ``features`` (array or {key: array}), ``targets`` (array -> "classes", or dict)."""

    def __init__(self, seq_idx: int, features: Any, targets: Any = None, seq_tag: str | None = None):
        self.seq_idx = seq_idx
        self.seq_tag = seq_tag if seq_tag is not None else f"seq-{seq_idx}"
        data = dict(features) if isinstance(features, dict) else {"data": features}
        if isinstance(targets, dict):
            data.update(targets)
        elif targets is not None:
            data["classes"] = targets
        self.features = {key: np.asarray(value) for key, value in data.items()}


class Dataset:
    """A list of sequences {data key: array}, with tags, reordered per epoch."""

    def __init__(
        self,
        *,
        name: str | None = None,
        seq_ordering: str = "default",
        batching: str | None = None,
        partition_epoch: int = 1,
        random_seed_offset: int = 0,
        seq_list_filter_file: str | Sequence[str] | None = None,
        fixed_random_subset: int | float | None = None,
        estimated_num_seqs: int | None = None,
        window: int = 1,
        chunking: Any = None,
        min_chunk_size: int = 0,
        use_cache_manager: bool = False,
    ):
        self.name = name or type(self).__name__
        self.seq_ordering = str(batching if batching is not None else seq_ordering)
        seq_order._parse_method(self.seq_ordering)  # fail early on a typo
        self.partition_epoch = int(partition_epoch or 1)
        self.random_seed_offset = int(random_seed_offset)
        self.seq_list_filter_file = seq_list_filter_file
        self.fixed_random_subset = fixed_random_subset
        self._estimated_num_seqs = estimated_num_seqs
        self.window = int(window)
        self.chunking = chunking
        self.min_chunk_size = int(min_chunk_size)
        self.num_outputs: dict[str, list[int]] = {}
        self._dtypes: dict[str, str] = {}
        self.labels: dict[str, list[str]] = {}
        self.epoch: int | None = None
        self._seq_order: np.ndarray | None = None
        self._cache: dict[int, SeqDict] = {}
        self._allowed: np.ndarray | None = None
        self._tag_index: dict[str, int] | None = None
        self._full_order_memo: tuple[int, np.ndarray] | None = None
        del use_cache_manager  # RWTH's file cache manager is site specific: files are read where they are
        if self.partition_epoch < 1 or self.window < 1:
            raise DatasetError(f"dataset {self.name!r}: partition_epoch and window must be >= 1")

    @classmethod
    def from_config(cls, spec: Any, **kwargs) -> Dataset:
        """Build a dataset from a config value (see ``init_dataset``)."""
        return init_dataset(spec, **kwargs)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    # ---- hooks for subclasses -------------------------------------------------------------------
    def _num_corpus_seqs(self) -> int:
        """Number of sequences in the whole corpus."""
        raise DatasetError(f"{type(self).__name__} must define _num_corpus_seqs()")

    def _load_corpus_seq(self, corpus_idx: int) -> SeqDict:
        """Arrays of one corpus sequence by data key."""
        raise DatasetError(f"{type(self).__name__} must define _load_corpus_seq(corpus_idx)")

    def _load_corpus_seqs(self, corpus_indices: Sequence[int]) -> list[SeqDict]:
        """Arrays of several corpus sequences; subclasses may read them in bulk."""
        return [self._load_corpus_seq(int(i)) for i in corpus_indices]

    def _corpus_tag(self, corpus_idx: int) -> str:
        """Tag of a corpus sequence."""
        return f"seq-{corpus_idx}"

    def _corpus_seq_lens(self, corpus_idx: int) -> dict[str, int]:
        """Length per data key of a corpus sequence; loads it unless a subclass knows better."""
        return {key: len(value) for key, value in self._load_corpus_seq(corpus_idx).items()}

    def _corpus_file(self, corpus_idx: int, key: str) -> str | None:
        """Path of the file holding ``key`` of a corpus sequence, for error messages; None if not file based."""
        return None

    # ---- data key description -------------------------------------------------------------------
    def get_data_keys(self) -> list[str]:
        """All data keys: ``"data"`` first, then the others sorted (as in RETURNN HDF files)."""
        keys = list(self.num_outputs)
        return (["data"] if "data" in keys else []) + sorted(k for k in keys if k != "data")

    def get_target_list(self) -> list[str]:
        """The data keys other than ``"data"``."""
        return [k for k in self.get_data_keys() if k != "data"]

    def _check_key(self, key: str) -> None:
        """Raise a DatasetError naming the dataset and its keys if ``key`` is unknown."""
        if key not in self.num_outputs:
            raise DatasetError(f"dataset {self.name!r}: no data key {key!r}; available keys: {self.get_data_keys()}")

    def get_data_dim(self, key: str) -> int:
        """Feature dim (dense) or number of classes (sparse) of ``key``; ``data`` times ``window``."""
        self._check_key(key)
        dim = int(self.num_outputs[key][0])
        return dim * self.window if key == "data" and not self.is_data_sparse(key) else dim

    def get_data_dtype(self, key: str) -> str:
        """Numpy dtype name of ``key``'s arrays."""
        self._check_key(key)
        return self._dtypes.get(key, "float32" if self.num_outputs[key][1] >= 2 else "int32")

    def is_data_sparse(self, key: str) -> bool:
        """True for integer class-index sequences (RETURNN: dtype has "int" and ndim <= 1)."""
        self._check_key(key)
        return "int" in self.get_data_dtype(key) and self.num_outputs[key][1] <= 1

    def get_data_shape(self, key: str) -> list[int]:
        """Shape of one frame (without time): ``[]`` for sparse or scalar frames, ``[dim]`` for dense."""
        if self.is_data_sparse(key) or self.num_outputs[key][1] <= 1:
            return []
        return [self.get_data_dim(key)]

    def get_extern_data(self) -> dict[str, dict]:
        """RETURNN ``extern_data`` dicts of all keys, for configs that give none: dim, shape, sparse, dtype."""
        out = {}
        for key in self.get_data_keys():
            entry = {"dim": self.get_data_dim(key), "shape": (None, *self.get_data_shape(key)), "dtype": self.get_data_dtype(key)}
            if self.is_data_sparse(key):
                entry["sparse"] = True
            out[key] = entry
        return out

    @property
    def num_inputs(self) -> int:
        """Dim of ``data`` (0 without a ``data`` key)."""
        return self.get_data_dim("data") if "data" in self.num_outputs else 0

    @num_inputs.setter
    def num_inputs(self, dim: int) -> None:
        """RETURNN-style subclasses set ``self.num_inputs``: the dim of dense ``data``."""
        ndim = self.num_outputs.get("data", [0, 2])[1]
        self.num_outputs["data"] = [int(dim), ndim]

    # ---- sequence order -------------------------------------------------------------------------
    def _allowed_corpus_indices(self) -> np.ndarray:
        """Corpus indices left after ``seq_list_filter_file`` and ``fixed_random_subset``."""
        if self._allowed is None:
            allowed = np.arange(self._num_corpus_seqs(), dtype=np.int64)
            if self.seq_list_filter_file is not None:
                wanted = self.seq_list_filter_file
                tags = set(read_text_lines(wanted) if isinstance(wanted, str) else wanted)
                tags.discard("")
                allowed = np.array([i for i in allowed if self._corpus_tag(int(i)) in tags], dtype=np.int64)
                if len(allowed) == 0:
                    raise DatasetError(f"dataset {self.name!r}: seq_list_filter_file {wanted!r} matches no sequence tag")
            if self.fixed_random_subset:
                allowed = allowed[seq_order.fixed_random_subset_indices(len(allowed), self.fixed_random_subset)]
            self._allowed = allowed
        return self._allowed

    def _sort_len(self, corpus_idx: int) -> int:
        """Length used by sorted orderings: of ``data`` if present, else of the first key."""
        lens = self._corpus_seq_lens(corpus_idx)
        return int(lens["data"] if "data" in lens else next(iter(lens.values()), 0))

    def _full_epoch_order(self, epoch: int) -> np.ndarray:
        """Order of one full pass over the corpus; shared by the sub-epochs of a partitioned epoch."""
        full = seq_order.full_epoch(epoch, self.partition_epoch)
        if self._full_order_memo is None or self._full_order_memo[0] != full:
            seed = seq_order.random_seed_for_epoch(
                epoch, partition_epoch=self.partition_epoch, random_seed_offset=self.random_seed_offset
            )
            order = seq_order.order_corpus(
                self._allowed_corpus_indices(), self.seq_ordering, seed=seed, get_seq_len=self._sort_len
            )
            self._full_order_memo = (full, order)
        return self._full_order_memo[1]

    def init_seq_order(
        self, epoch: int | None = None, seq_list: Sequence[str] | None = None, seq_order: Sequence[int] | None = None
    ) -> bool:
        """Set the sequence list of ``epoch``; ``seq_list`` (tags) or ``seq_order`` (corpus indices) override it."""
        self.epoch = epoch
        if seq_list is not None:
            order = self.corpus_indices_for_tags(seq_list)
        elif seq_order is not None:
            order = np.asarray(seq_order, dtype=np.int64)
        else:
            full = self._full_epoch_order(epoch or 1)
            start, end = self._partition_bounds(len(full), epoch or 1)
            order = full[start:end]
        self._seq_order = order
        self._cache.clear()
        logger.debug("%s: epoch %s, %i seqs", self.name, epoch, len(order))
        return True

    def _partition_bounds(self, num_seqs: int, epoch: int) -> tuple[int, int]:
        """Slice of the full-epoch order that sub-epoch ``epoch`` uses."""
        return seq_order.partition_bounds(num_seqs, self.partition_epoch, epoch)

    def get_current_seq_order(self) -> np.ndarray:
        """Corpus indices of the current epoch's sequences, in order."""
        if self._seq_order is None:
            self.init_seq_order(epoch=1)
        return self._seq_order

    def get_corpus_seq_idx(self, seq_idx: int) -> int:
        """Corpus index of the ``seq_idx``-th sequence of the current epoch."""
        order = self.get_current_seq_order()
        if not 0 <= seq_idx < len(order):
            raise DatasetError(f"dataset {self.name!r}: sequence index {seq_idx} out of range (num_seqs={len(order)})")
        return int(order[seq_idx])

    def corpus_indices_for_tags(self, tags: Sequence[str]) -> np.ndarray:
        """Corpus indices of the given sequence tags (DatasetError naming the first unknown tag)."""
        if self._tag_index is None:
            self._tag_index = {}
            for i in range(self._num_corpus_seqs()):
                self._tag_index.setdefault(self._corpus_tag(i), i)
        missing = [t for t in tags if t not in self._tag_index]
        if missing:
            raise DatasetError(f"dataset {self.name!r}: unknown sequence tag {missing[0]!r} ({len(missing)} unknown)")
        return np.array([self._tag_index[t] for t in tags], dtype=np.int64)

    @property
    def num_seqs(self) -> int:
        """Number of sequences in the current epoch."""
        return len(self.get_current_seq_order())

    @property
    def estimated_num_seqs(self) -> int:
        """Sequences per (sub-)epoch: the configured estimate, else exact."""
        if self._estimated_num_seqs is not None:
            return int(self._estimated_num_seqs)
        if self._seq_order is not None:
            return len(self._seq_order)
        return len(self._allowed_corpus_indices()) // self.partition_epoch

    def is_less_than_num_seqs(self, seq_idx: int) -> bool:
        """True if ``seq_idx`` is a valid index in the current epoch."""
        return seq_idx < self.num_seqs

    def get_all_tags(self) -> list[str]:
        """Tags of the whole corpus, in corpus order."""
        return [self._corpus_tag(i) for i in range(self._num_corpus_seqs())]

    def get_num_timesteps(self) -> int:
        """Total frames of ``data`` (or the first key) over the corpus."""
        return sum(self._sort_len(i) for i in range(self._num_corpus_seqs()))

    # ---- sequence access --------------------------------------------------------------------------
    def load_seqs(self, start: int, end: int) -> None:
        """Make sequences ``[start, end)`` available; drops the cached ones outside that range."""
        for idx in [i for i in self._cache if i < start or i >= end]:
            del self._cache[idx]
        missing = [i for i in range(start, min(end, self.num_seqs)) if i not in self._cache]
        if missing:
            corpus = [self.get_corpus_seq_idx(i) for i in missing]
            for i, seq in zip(missing, self._load_corpus_seqs(corpus)):
                self._cache[i] = self._postprocess(seq)

    def _get_seq(self, seq_idx: int) -> SeqDict:
        """The (cached) arrays of a sequence of the current epoch, loading it if needed."""
        seq = self._cache.get(seq_idx)
        if seq is None:
            for idx in [i for i in self._cache if i < seq_idx - 256 or i > seq_idx + 256]:
                del self._cache[idx]
            seq = self._postprocess(self._load_corpus_seq(self.get_corpus_seq_idx(seq_idx)))
            self._cache[seq_idx] = seq
        return seq

    def _postprocess(self, seq: SeqDict) -> SeqDict:
        """Apply ``window`` to ``data``."""
        if self.window > 1 and "data" in seq and seq["data"].ndim == 2:
            seq = dict(seq, data=sliding_window(seq["data"], self.window))
        return seq

    def get_data(self, seq_idx: int, key: str) -> np.ndarray:
        """Array of ``key`` of the ``seq_idx``-th sequence of the current epoch (time first)."""
        self._check_key(key)
        seq = self._get_seq(seq_idx)
        if key not in seq:
            raise DatasetError(f"dataset {self.name!r}: sequence {self.get_tag(seq_idx)!r} has no data for key {key!r}")
        return seq[key]

    def get_input_data(self, seq_idx: int) -> np.ndarray:
        """``get_data(seq_idx, "data")``."""
        return self.get_data(seq_idx, "data")

    def get_targets(self, key: str, seq_idx: int) -> np.ndarray:
        """``get_data(seq_idx, key)`` (RETURNN's argument order)."""
        return self.get_data(seq_idx, key)

    def get_tag(self, seq_idx: int) -> str:
        """Tag of the ``seq_idx``-th sequence of the current epoch."""
        return self._corpus_tag(self.get_corpus_seq_idx(seq_idx))

    def get_seq_file(self, seq_idx: int, key: str) -> str | None:
        """File holding ``key`` of the ``seq_idx``-th sequence of the current epoch (None if not file based)."""
        return self._corpus_file(self.get_corpus_seq_idx(seq_idx), key)

    def get_seq_length(self, seq_idx: int) -> dict[str, int]:
        """Length (frames) per data key of the ``seq_idx``-th sequence of the current epoch."""
        seq = self._cache.get(seq_idx)
        if seq is not None:
            return {key: len(value) for key, value in seq.items()}
        return dict(self._corpus_seq_lens(self.get_corpus_seq_idx(seq_idx)))


def sliding_window(x: np.ndarray, window: int) -> np.ndarray:
    """Concatenate each frame with its neighbours (zero-padded): [T, D] -> [T, D * window]."""
    left = (window - 1) // 2
    padded = np.pad(x, ((left, window - 1 - left), (0, 0)))
    return np.concatenate([padded[w : w + len(x)] for w in range(window)], axis=1)


# ---- registry and construction from config values ---------------------------------------------
_REGISTRY: dict[str, type[Dataset]] = {}


def register_dataset(cls: type[Dataset] | None = None, *, name: str | None = None) -> Any:
    """Register a Dataset subclass under its class name (or ``name``); usable as a decorator."""

    def _register(klass: type[Dataset]) -> type[Dataset]:
        if not (isinstance(klass, type) and issubclass(klass, Dataset)):
            raise DatasetError(f"register_dataset: expected a subclass of Dataset, got {klass!r}")
        _REGISTRY[name or klass.__name__] = klass
        return klass

    return _register(cls) if cls is not None else _register


def get_dataset_class(name: str, *, config: Any = None) -> type[Dataset]:
    """The dataset class registered as ``name`` (or defined under that name in a Python config)."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if config is not None and hasattr(config, "typed_value"):
        candidate = config.typed_value(name, None)
        if isinstance(candidate, type) and issubclass(candidate, Dataset):
            return candidate
    close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise DatasetError(f"dataset \"class\": unknown dataset class {name!r}{hint} known: {', '.join(sorted(_REGISTRY))}")


def _parse_string_spec(spec: str) -> dict:
    """A dataset given as a string: a dict literal, ``Module::Class(key=value, ...)``, or a path (or comma-separated
    paths) of HDF files."""
    text = spec.strip()
    if text.startswith("{"):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError) as exc:
            raise DatasetError(f"dataset {spec!r}: cannot parse the dict literal: {exc}") from None
        if not isinstance(value, dict):
            raise DatasetError(f"dataset {spec!r}: expected a dict literal")
        return value
    if text.startswith("config:"):
        raise DatasetError(f"dataset {spec!r}: 'config:' references must be resolved by the config, not passed here")
    if "::" in text:
        return _parse_class_call(spec, text)
    return {"class": "HDFDataset", "files": [p for p in text.split(",") if p]}


def _parse_class_call(spec: str, text: str) -> dict:
    """RETURNN's ``"Module::Class(key=value, ...)"`` (e.g. ``GeneratingDataset::Task12AXDataset(num_seqs=1000)``):
    the class by its name (the module part is RETURNN's file and not needed), literal keyword values."""
    _, _, call = text.partition("::")
    try:
        node = ast.parse(call if "(" in call else call + "()", mode="eval").body
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name) or node.args:
            raise ValueError("expected Class(key=value, ...)")
        kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg is not None}
    except (ValueError, SyntaxError) as exc:
        raise DatasetError(f"dataset {spec!r}: expected 'Module::Class(key=value, ...)' with literal values: "
                           f"{exc}") from None
    return {"class": node.func.id, **kwargs}


def init_dataset(
    spec: Any,
    *,
    extra_kwargs: dict | None = None,
    default_kwargs: dict | None = None,
    config: Any = None,
) -> Dataset:
    """Build a dataset from a config value: dict with "class", HDF path string, list of HDF paths, or a Dataset."""
    if isinstance(spec, Dataset):
        return spec
    if isinstance(spec, str):
        spec = _parse_string_spec(spec)
    elif isinstance(spec, (list, tuple)) and spec and all(isinstance(p, str) for p in spec):
        spec = {"class": "HDFDataset", "files": list(spec)}
    if not isinstance(spec, dict):
        raise DatasetError(
            f"dataset: expected a dict with \"class\", an HDF file path or a list of them, got {type(spec).__name__}"
        )
    if "class" not in spec:
        raise DatasetError(f"dataset dict {spec!r}: missing key \"class\"")
    cls = spec["class"]
    if isinstance(cls, str):
        cls = get_dataset_class(cls, config=config)
    elif not (isinstance(cls, type) and issubclass(cls, Dataset)):
        raise DatasetError(f"dataset \"class\": expected a dataset class name or a Dataset subclass, got {cls!r}")
    known = _known_options(cls)
    kwargs = {k: v for k, v in (default_kwargs or {}).items() if k in known}  # defaults only where accepted
    kwargs.update((k, v) for k, v in spec.items() if k != "class")
    kwargs.update(extra_kwargs or {})
    _check_options(cls, kwargs, known)
    return cls(**kwargs)


def init_dataset_from_config(config: Any, key: str, *, train: bool | None = None) -> Dataset | None:
    """The dataset under ``key`` (``train``, ``dev``, ``eval``, ...) with RETURNN's config-wide defaults, or None.

    Training data gets ``batching`` (as seq_ordering), ``chunking``, ``min_chunk_size`` and ``window`` from the
    config; other data is ``sorted`` and not chunked. Options in the dataset's own dict win.
    """
    value = config_value(config, key)
    if value is None or value == "":
        return None
    train = key == "train" if train is None else train
    if train:
        names = {"seq_ordering": "batching", "chunking": "chunking", "min_chunk_size": "min_chunk_size", "window": "window"}
        defaults = {opt: config_value(config, name) for opt, name in names.items()}
        defaults = {opt: v for opt, v in defaults.items() if v is not None}
    else:
        defaults = {"seq_ordering": "sorted"}
    defaults.setdefault("name", key)  # as in RETURNN: errors then say dataset 'dev'
    return init_dataset(value, default_kwargs=defaults, config=config)


def config_value(config: Any, key: str, default: Any = None) -> Any:
    """A raw value from a Config (``typed_value``) or a plain dict."""
    if config is None:
        return default
    if isinstance(config, dict):
        return config.get(key, default)
    return config.typed_value(key, default)


def _known_options(cls: type[Dataset]) -> set[str]:
    """Option names that the ``__init__`` chain of ``cls`` accepts (following ``**kwargs`` to the base)."""
    known: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(vars(klass)["__init__"]).parameters
        known.update(k for k, p in params.items() if k != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL))
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            break
    return known


def _check_options(cls: type[Dataset], kwargs: dict, known: set[str]) -> None:
    """Raise a DatasetError for options that no ``__init__`` in the class chain accepts."""
    for key in kwargs:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise DatasetError(f"dataset class {cls.__name__!r}: unknown option {key!r}{hint} known: {', '.join(sorted(known))}")
