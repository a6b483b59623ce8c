"""The reinterpret_data layer: the same values with other template meta (sparse, dims, axis roles, layout)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import tensorflow as tf

from returnn.tensor.data import Data
from returnn.tensor.dim import FEATURE, Dim
from returnn.tf.layers.base import LayerBase, LayerContext, LayerOpts, layer_ref, register_layer
from returnn.tf.layers.seq_ops import replace_dim, transpose_to
from returnn.tf.layers.shape import axis_of


@register_layer("reinterpret_data")
class ReinterpretDataLayer(LayerBase):
    """Its input with changed meta: layout (``enforce_batch_major`` / ``enforce_time_major``), axis roles
    (``set_axes``, ``switch_axes``), dims (``set_dim_tags``, ``size_base``: take that layer's time dim and
    lengths), sparsity (``set_sparse``, ``set_sparse_dim``, ``increase_sparse_dim``).

    Config: ``{"class": "reinterpret_data", "from": "x", "set_sparse": True, "set_sparse_dim": 10}``
    """

    example = {"from": "data:classes", "set_sparse_dim": 7, "enforce_time_major": True}

    class Opts(LayerOpts):
        enforce_batch_major: bool = False
        enforce_time_major: bool = False
        set_axes: dict | None = None
        switch_axes: Sequence[str] | None = None
        set_dim_tags: dict | None = None
        size_base: str | None = layer_ref()
        set_sparse: bool | None = None
        set_sparse_dim: int | Dim | None = None
        increase_sparse_dim: int | None = None

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        data = ctx.input_template()
        if opts.enforce_batch_major and opts.enforce_time_major:
            raise ctx.error('"enforce_batch_major" and "enforce_time_major" exclude each other')
        if opts.enforce_time_major:
            if data.time_dim is None or data.batch_dim_axis is None:
                raise ctx.error(f'"enforce_time_major": {data.describe()} needs a time and a batch axis')
            data = data.copy_as_time_major()
        elif opts.enforce_batch_major:
            data = data.copy_as_batch_major()
        data = cls._roles(ctx, data, opts)
        for axis_desc, new in (opts.set_dim_tags or {}).items():
            data = cls._set_dim(ctx, data, axis_of(ctx, data, axis_desc, "set_dim_tags"), new, "set_dim_tags")
        if opts.size_base is not None:
            base = ctx.ref_templates[opts.size_base]
            if data.time_dim is None or base.time_dim is None:
                raise ctx.error(f'"size_base": both {data.describe()} and {base.describe()} need a time axis')
            data = cls._set_dim(ctx, data, data.time_dim_axis, base.time_dim, "size_base")
        return cls._sparse(ctx, data, opts)

    @staticmethod
    def _roles(ctx: LayerContext, data: Data, opts: Opts) -> Data:
        """``set_axes`` ({"T": axis, "F": axis}) and ``switch_axes`` (["T", "F"]: exchange the roles)."""
        if opts.switch_axes is not None:
            if sorted(a.upper() for a in opts.switch_axes) != ["F", "T"]:
                raise ctx.error(f'"switch_axes": only ["T", "F"] is supported, got {opts.switch_axes!r}')
            data = data.replace(time_dim=data.feature_dim, feature_dim=data.time_dim)
        for role, axis_desc in (opts.set_axes or {}).items():
            key = {"t": "time_dim", "time": "time_dim", "f": "feature_dim", "feature": "feature_dim"}.get(role.lower())
            if key is None:
                raise ctx.error(f'"set_axes": unknown role {role!r}; expected "T" or "F"')
            dim = None if axis_desc is None else data.dims[axis_of(ctx, data, axis_desc, "set_axes")]
            data = data.replace(**{key: dim})
        return data

    @staticmethod
    def _set_dim(ctx: LayerContext, data: Data, axis: int, new: Any, option: str) -> Data:
        """The dim at ``axis`` replaced by ``new`` (sizes must agree)."""
        old = data.dims[axis]
        if not isinstance(new, Dim):
            raise ctx.error(f'"{option}": expected a Dim, got {new!r}')
        if old.is_batch or old.is_dynamic != new.is_dynamic or (not old.is_dynamic and old.size != new.size):
            raise ctx.error(f'"{option}": cannot replace {old.describe()} by {new.describe()} in {data.describe()}')
        return replace_dim(data, axis, new)

    @staticmethod
    def _sparse(ctx: LayerContext, data: Data, opts: Opts) -> Data:
        """``set_sparse`` / ``set_sparse_dim`` / ``increase_sparse_dim``."""
        sparse = data.sparse if opts.set_sparse is None else opts.set_sparse
        if not sparse:
            if opts.set_sparse_dim is not None or opts.increase_sparse_dim:
                raise ctx.error('"set_sparse_dim" / "increase_sparse_dim" need sparse data ("set_sparse": True)')
            return data.replace(sparse_dim=None) if data.sparse else data
        if data.dtype.startswith("float"):
            raise ctx.error(f'"set_sparse": sparse data needs an int dtype, {data.describe()} is {data.dtype}')
        vocab = opts.set_sparse_dim if opts.set_sparse_dim is not None else data.sparse_dim
        if vocab is None:
            raise ctx.error('"set_sparse": needs "set_sparse_dim" (the number of classes)')
        if isinstance(vocab, int):
            vocab = Dim(vocab, f"{ctx.name}:sparse-dim", kind=FEATURE)
        if opts.increase_sparse_dim:
            vocab = Dim(vocab.size + opts.increase_sparse_dim, f"{ctx.name}:sparse-dim", kind=FEATURE)
        return data.replace(sparse_dim=vocab)

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        src = ctx.input_template()
        self.size_base = opts.size_base
        out_dims = list(self.out.dims)
        # the input dim each output axis came from (by position after the layout change)
        layout = src.copy_as_time_major() if opts.enforce_time_major else (
            src.copy_as_batch_major() if opts.enforce_batch_major else src)
        self.src_order = list(layout.dims)
        self.renamed = {new: old for old, new in zip(self.src_order, out_dims) if old is not new}

    def __call__(self, sources: Sequence[Data], *, train: bool, refs: Mapping[str, Data] | None = None) -> Data:
        x = self.input_data(sources)
        tensor = transpose_to(x.tensor, x.dims, self.src_order)
        sizes = {}
        for new, old in self.renamed.items():
            if new.is_dynamic:
                sizes[new] = x.get_dyn_size(old)
        if self.size_base is not None:
            base = refs[self.size_base]
            sizes[base.time_dim] = base.get_dyn_size(base.time_dim)
        return self.out.with_tensor(tf.convert_to_tensor(tensor), like=x, dyn_sizes=sizes)
