"""Elementwise layers beyond combine: cast, compare, switch (where)."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import tensorflow as tf

from returnn.tensor.align import aligned_tensor, common_dims, merged_dyn_sizes
from returnn.tensor.data import Data
from returnn.tf.layers.base import LayerBase, LayerContext, LayerOpts, layer_ref, register_layer
from returnn.tf.layers.combine import broadcast_tensors, broadcast_template
from returnn.tf.layers.opts import did_you_mean

COMPARE_KINDS: dict[str, Callable[[Any, Any], Any]] = {
    "equal": tf.equal, "not_equal": tf.not_equal, "less": tf.less, "less_equal": tf.less_equal,
    "greater": tf.greater, "greater_equal": tf.greater_equal,
}


@register_layer("cast")
class CastLayer(LayerBase):
    """Its input converted to ``dtype`` (a float dtype drops sparsity).

    Config: ``{"class": "cast", "from": "data:classes", "dtype": "float32"}``
    """

    frame_wise = True

    example = {"from": "data:classes", "dtype": "float32"}

    class Opts(LayerOpts):
        dtype: str

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        try:
            tf.as_dtype(opts.dtype)
        except TypeError:
            raise ctx.error(f'"dtype": unknown dtype {opts.dtype!r}') from None
        data = ctx.input_template()
        keep_sparse = data.sparse and tf.as_dtype(opts.dtype).is_integer
        return data.replace(dtype=opts.dtype, sparse_dim=data.sparse_dim if keep_sparse else None)

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)

    def __call__(self, sources: Sequence[Data], *, train: bool) -> Data:
        x = self.input_data(sources)
        return self.out.with_tensor(tf.cast(x.tensor, self.out.dtype), like=x)


@register_layer("compare")
class CompareLayer(LayerBase):
    """Elementwise comparison (bool output): each source against ``value``, or neighbouring sources pairwise.

    Config: ``{"class": "compare", "from": "x", "kind": "greater", "value": 0.5}``; kinds: equal, not_equal,
    less, less_equal, greater, greater_equal. Several results are combined with logical and.
    """

    frame_wise = True

    example = {"from": "data", "kind": "greater", "value": 0.0}

    class Opts(LayerOpts):
        kind: str = "equal"
        value: float | int | bool | None = None

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        if opts.kind not in COMPARE_KINDS:
            raise ctx.error(f'"kind": unknown {opts.kind!r}{did_you_mean(opts.kind, COMPARE_KINDS)}; '
                            f"known: {', '.join(COMPARE_KINDS)}")
        if opts.value is None and len(ctx.sources) < 2:
            raise ctx.error('needs a "value" or at least two sources to compare')
        return broadcast_template(ctx).replace(dtype="bool", sparse_dim=None)

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.op, self.value = COMPARE_KINDS[opts.kind], opts.value

    def __call__(self, sources: Sequence[Data], *, train: bool) -> Data:
        xs = broadcast_tensors(sources, self.out.dims)
        if self.value is not None:
            results = [self.op(x, tf.cast(self.value, x.dtype)) for x in xs]
        else:
            results = [self.op(a, b) for a, b in zip(xs[:-1], xs[1:])]
        y = results[0]
        for r in results[1:]:
            y = tf.logical_and(y, r)
        return self.out.with_tensor(y, dyn_sizes=merged_dyn_sizes(sources))


@register_layer("switch")
class SwitchLayer(LayerBase):
    """``true_from`` where ``condition`` holds, else ``false_from`` (each a layer or a number), broadcast.

    Config: ``{"class": "switch", "condition": "mask", "true_from": "x", "false_from": 0.0}``; a bool
    ``condition`` picks one branch when the network is built.
    """

    default_from = "none"
    example = {"condition": "cond", "true_from": "data", "false_from": -1.0}
    example_extra = {"cond": {"class": "compare", "from": "data", "kind": "greater", "value": 0.0}}

    class Opts(LayerOpts):
        condition: str | bool = layer_ref(dataclasses.MISSING)
        true_from: str | float | int | None = layer_ref(None)
        false_from: str | float | int | None = layer_ref(None)

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        branches = [ctx.ref_templates[b] for b in (opts.true_from, opts.false_from) if isinstance(b, str)]
        if opts.true_from is None or opts.false_from is None:
            raise ctx.error('needs "true_from" and "false_from" (a layer name or a number)')
        if isinstance(opts.condition, bool):
            chosen = opts.true_from if opts.condition else opts.false_from
            return ctx.ref_templates[chosen] if isinstance(chosen, str) else cls._scalar(ctx, opts)
        cond = ctx.ref_templates[opts.condition]
        if cond.dtype != "bool":
            raise ctx.error(f'"condition": expected a bool layer, got {cond.describe()} ({cond.dtype})')
        datas = [cond, *branches]
        dims = common_dims(datas)
        base = max(branches, key=lambda d: d.batch_ndim) if branches else cls._scalar(ctx, opts)
        dtypes = {d.dtype for d in branches}
        if len(dtypes) > 1:
            raise ctx.error(f'"true_from" and "false_from" differ in dtype: {", ".join(sorted(dtypes))}')
        feature = next((d.feature_dim for d in datas if d.feature_dim is not None and d.feature_dim in dims), None)
        return base.copy_template(ctx.name).with_dims(dims, feature_dim=feature)

    @staticmethod
    def _scalar(ctx: LayerContext, opts: Opts) -> Data:
        """Template of a number branch (float32 unless both branches are ints)."""
        ints = all(isinstance(v, int) for v in (opts.true_from, opts.false_from) if not isinstance(v, str))
        return Data(ctx.name, (), dtype="int32" if ints else "float32")

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.opts = opts

    def __call__(self, sources: Sequence[Data], *, train: bool, refs: Mapping[str, Data] | None = None) -> Data:
        o, refs = self.opts, refs or {}
        if isinstance(o.condition, bool):
            branches = [o.true_from if o.condition else o.false_from]
        else:
            branches = [o.condition, o.true_from, o.false_from]
        values = [aligned_tensor(refs[b], self.out.dims) if isinstance(b, str) else tf.constant(b, self.out.dtype)
                  for b in branches]
        y = values[0] if len(values) == 1 else tf.where(*values)
        used = [refs[b] for b in branches if isinstance(b, str)]
        return self.out.with_tensor(y, dyn_sizes=merged_dyn_sizes(used))
