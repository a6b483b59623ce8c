"""``Data``: a tensor template (dims, dtype, sparse vocab) and, once computed, its tensor and seq lengths."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import numpy as np
import tensorflow as tf

from returnn.errors import LayerConfigError
from returnn.tensor.axes import resolve_axes, resolve_axis
from returnn.tensor.dim import BATCH, FEATURE, SPATIAL, BeamBatchDim, Dim

_AUTO: Any = "auto"


@dataclasses.dataclass(frozen=True, eq=False)
class Data:
    """A template of a layer output or extern data key; ``tensor`` and ``dyn_sizes`` once a batch ran.

    ``dims`` lists every axis in order, the batch axis included. ``time_dim`` and ``feature_dim`` default
    to the first spatial (preferably dynamic) dim and the last feature dim; sparse data (``sparse_dim``,
    the vocab) has no feature dim. ``dyn_sizes`` maps each dynamic dim to its [B] int32 lengths.
    """

    name: str
    dims: tuple[Dim, ...]
    dtype: str = "float32"
    sparse_dim: Dim | None = None
    time_dim: Dim | None = _AUTO
    feature_dim: Dim | None = _AUTO
    available_for_inference: bool = True
    tensor: Any = None
    dyn_sizes: Mapping[Dim, Any] = dataclasses.field(default_factory=dict)
    logits: Any = None  # pre-softmax values when ``tensor`` is a softmax output (for stable log-probs)
    beam_scores: Any = None  # [B*beam] scores of the hypotheses when the batch dim is a beam's (search)
    padding_zeroed: bool = False  # the tensor is 0 on every padded frame already (masked_tensor() is the tensor)

    def __post_init__(self) -> None:
        dims = tuple(self.dims)
        if not all(isinstance(dim, Dim) for dim in dims):
            raise TypeError(f"Data {self.name!r}: dims must be Dim objects, got {dims!r}")
        if sum(dim.is_batch for dim in dims) > 1:
            raise ValueError(f"Data {self.name!r}: more than one batch dim in {dims!r}")
        object.__setattr__(self, "dims", dims)
        object.__setattr__(self, "dyn_sizes", dict(self.dyn_sizes))
        if self.time_dim is _AUTO or (self.time_dim is not None and self.time_dim not in dims):
            object.__setattr__(self, "time_dim", self._default_time_dim())
        if self.sparse_dim is not None:
            object.__setattr__(self, "feature_dim", None)
        elif self.feature_dim is _AUTO or (self.feature_dim is not None and self.feature_dim not in dims):
            feats = [dim for dim in dims if dim.kind == FEATURE and dim is not self.time_dim]
            object.__setattr__(self, "feature_dim", feats[-1] if feats else None)

    def _default_time_dim(self) -> Dim | None:
        """The first dynamic spatial dim, else the first spatial dim, else None."""
        spatial = [dim for dim in self.dims if dim.kind == SPATIAL]
        dynamic = [dim for dim in spatial if dim.is_dynamic]
        return (dynamic or spatial or [None])[0]

    # ---- template properties ----

    @property
    def batch_dim_axis(self) -> int | None:
        """Index of the batch axis, or None."""
        return next((i for i, dim in enumerate(self.dims) if dim.kind == BATCH), None)

    @property
    def beam(self) -> BeamBatchDim | None:
        """The beam search whose hypotheses the batch axis holds (None: a plain batch, or no batch axis)."""
        axis = self.batch_dim_axis
        return self.dims[axis] if axis is not None and isinstance(self.dims[axis], BeamBatchDim) else None

    @property
    def time_dim_axis(self) -> int | None:
        """Index of the time axis, or None."""
        return None if self.time_dim is None else self.dims.index(self.time_dim)

    @property
    def feature_dim_axis(self) -> int | None:
        """Index of the feature axis (dense data only), or None."""
        return None if self.feature_dim is None else self.dims.index(self.feature_dim)

    @property
    def sparse(self) -> bool:
        """Whether the values are class indices into ``sparse_dim``."""
        return self.sparse_dim is not None

    @property
    def dim(self) -> int | None:
        """RETURNN's ``dim``: the vocab size when sparse, else the feature size."""
        source = self.sparse_dim if self.sparse else self.feature_dim
        return None if source is None else source.size

    @property
    def batch_shape(self) -> tuple[int | None, ...]:
        """Static shape with None for batch and dynamic dims."""
        return tuple(dim.size for dim in self.dims)

    @property
    def batch_ndim(self) -> int:
        """Number of axes, the batch axis included."""
        return len(self.dims)

    @property
    def placeholder(self) -> Any:
        """RETURNN's name for the tensor."""
        return self.tensor

    @property
    def seq_lens(self) -> Any:
        """The [B] lengths of the time dim (None when there is no dynamic time dim)."""
        return None if self.time_dim is None else self.dyn_sizes.get(self.time_dim)

    def describe(self) -> str:
        """``'name' [B,'data:time','data:feature'(9)]`` for error messages."""
        parts = ["B" if dim.is_batch and not isinstance(dim, BeamBatchDim) else dim.describe() for dim in self.dims]
        sparse = f" sparse {self.sparse_dim.describe()}" if self.sparse_dim is not None else ""
        return f"{self.name!r} [{','.join(parts)}]{sparse}"

    def __repr__(self) -> str:
        return f"Data({self.describe()}, {self.dtype})"

    # ---- deriving templates ----

    def replace(self, **changes: Any) -> Data:
        """A copy with fields changed; time/feature dims reset when their dim is gone (a missing time dim is looked
        for again among new dims), logits when the tensor is new, ``padding_zeroed`` with a new tensor or sizes."""
        if "tensor" in changes:
            changes.setdefault("logits", None)
        if "tensor" in changes or "dyn_sizes" in changes:
            changes.setdefault("padding_zeroed", False)
        if "dims" in changes and "time_dim" not in changes and self.time_dim is None:
            # new dims (e.g. an encoder axis beside a loop frame): a dynamic one among them is the time dim
            changes["time_dim"] = next((dim for dim in changes["dims"] if dim.kind == SPATIAL and dim.is_dynamic), None)
        return dataclasses.replace(self, **changes)

    def copy_template(self, name: str | None = None) -> Data:
        """The template alone (no tensor, no sizes)."""
        return self.replace(name=name or self.name, tensor=None, dyn_sizes={})

    def with_feature_dim(self, dim: Dim, *, dtype: str | None = None) -> Data:
        """Dense data whose feature dim is ``dim``: replaces the feature axis, or appends one (sparse input)."""
        axis = self.feature_dim_axis
        dims = list(self.dims)
        if axis is None:
            dims.append(dim)
        else:
            dims[axis] = dim
        dense_dtype = dtype or (self.dtype if not self.sparse else "float32")
        return self.replace(dims=tuple(dims), feature_dim=dim, sparse_dim=None, dtype=dense_dtype)

    def with_dims(self, dims: Sequence[Dim], **changes: Any) -> Data:
        """A template with other dims (time/feature follow when still present)."""
        return self.replace(dims=tuple(dims), **changes)

    def find_axis(self, dim: Dim) -> int | None:
        """Axis of ``dim`` (the same object first, else a matching static dim), or None."""
        for i, own in enumerate(self.dims):
            if own is dim:
                return i
        return next((i for i, own in enumerate(self.dims) if own.matches(dim)), None)

    def get_axes(self, desc: Any) -> list[int]:
        """Axes named by ``desc`` ("B", "T", "F", "spatial", "except_time", "stag:x", Dim, int, list)."""
        return resolve_axes(self, desc)

    def get_axis(self, desc: Any) -> int:
        """The one axis named by ``desc``."""
        return resolve_axis(self, desc)

    # ---- tensors ----

    def with_tensor(self, tensor: Any, *, like: Data | None = None, dyn_sizes: Mapping[Dim, Any] | None = None) -> Data:
        """This template with ``tensor`` attached; sizes of dynamic dims come from ``like`` and ``dyn_sizes``."""
        tensor = tf.convert_to_tensor(tensor)
        if tensor.shape.rank is not None and tensor.shape.rank != self.batch_ndim:
            raise ValueError(f"{self.describe()}: tensor has rank {tensor.shape.rank}, template {self.batch_ndim}")
        sizes = dict(self.dyn_sizes)
        if like is not None:
            sizes.update(like.dyn_sizes)
        sizes.update(dyn_sizes or {})
        sizes = {dim: size for dim, size in sizes.items() if dim in self.dims}
        return self.replace(tensor=tensor, dyn_sizes=sizes)

    def numpy(self) -> np.ndarray:
        """The tensor as a NumPy array (eager only)."""
        return self.tensor.numpy()

    def copy_transpose(self, perm: Sequence[int]) -> Data:
        """Axes reordered: new axis i is old axis ``perm[i]``."""
        perm = list(perm)
        if sorted(perm) != list(range(self.batch_ndim)):
            raise ValueError(f"{self.describe()}: bad permutation {perm}")
        if perm == list(range(self.batch_ndim)):
            return self
        tensor = None if self.tensor is None else tf.transpose(self.tensor, perm)
        logits = None if self.logits is None else tf.transpose(self.logits, perm)
        return self.replace(dims=tuple(self.dims[i] for i in perm), tensor=tensor, logits=logits,
                            padding_zeroed=self.padding_zeroed)

    def copy_move_axis(self, old_axis: int, new_axis: int) -> Data:
        """Axis ``old_axis`` moved to position ``new_axis``."""
        perm = list(range(self.batch_ndim))
        perm.insert(new_axis % self.batch_ndim, perm.pop(old_axis))
        return self.copy_transpose(perm)

    def copy_with_feature_last(self) -> Data:
        """Feature axis moved to the end (unchanged when there is none)."""
        axis = self.feature_dim_axis
        return self if axis is None else self.copy_move_axis(axis, -1)

    def copy_as_batch_major(self) -> Data:
        """Batch axis first."""
        axis = self.batch_dim_axis
        return self if axis is None else self.copy_move_axis(axis, 0)

    def copy_as_time_major(self) -> Data:
        """Time axis first, then batch (raises if there is no time or batch axis)."""
        if self.time_dim_axis is None or self.batch_dim_axis is None:
            raise LayerConfigError(f"{self.describe()}: time-major needs a time and a batch axis")
        order = [self.time_dim_axis, self.batch_dim_axis]
        return self.copy_transpose(order + [i for i in range(self.batch_ndim) if i not in order])

    def get_dyn_size(self, dim: Dim) -> Any:
        """The [B] lengths of a dynamic dim; the full axis length when none were given."""
        size = self.dyn_sizes.get(dim)
        if size is not None:
            return size
        axis = self.dims.index(dim)
        shape = tf.shape(self.tensor)
        batch = shape[self.batch_dim_axis] if self.batch_dim_axis is not None else 1
        return tf.fill([batch], shape[axis])

    def sequence_mask(self, dim: Dim | None = None) -> Any:
        """[B, T] bool mask, True on valid frames of ``dim`` (default: the time dim)."""
        dim = dim or self.time_dim
        axis = self.dims.index(dim)
        return tf.sequence_mask(self.get_dyn_size(dim), maxlen=tf.shape(self.tensor)[axis])

    def mask_broadcast(self, dim: Dim | None = None) -> Any:
        """Bool mask of valid frames of ``dim`` with the rank of the tensor (size 1 on other axes)."""
        dim = dim or self.time_dim
        mask = self.sequence_mask(dim)  # [B, T]
        b_axis, t_axis = self.batch_dim_axis, self.dims.index(dim)
        if b_axis > t_axis:
            mask = tf.transpose(mask)
        shape = [1] * self.batch_ndim
        for axis in (b_axis, t_axis):
            shape[axis] = tf.shape(self.tensor)[axis]
        return tf.reshape(mask, tf.stack(shape))

    def dynamic_dims(self) -> list[Dim]:
        """The dynamic non-batch dims."""
        return [dim for dim in self.dims if dim.is_dynamic and not dim.is_batch]

    def masked_tensor(self, value: float = 0.0) -> Any:
        """The tensor with every padded frame (of every dynamic dim) set to ``value``."""
        tensor = self.tensor
        if self.batch_dim_axis is None or (self.padding_zeroed and value == 0.0):
            return tensor
        for dim in self.dynamic_dims():
            tensor = tf.where(self.mask_broadcast(dim), tensor, tf.cast(value, tensor.dtype))
        return tensor
