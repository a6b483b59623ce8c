"""Attention building blocks: dot (batched tensor contraction), softmax_over_spatial, generic_attention,
positional_encoding (also one frame per step inside a rec loop)."""

from __future__ import annotations

import math
import string
import types
from typing import Any, Mapping, Sequence

import tensorflow as tf

from returnn.errors import LayerConfigError
from returnn.tensor.align import aligned_tensor, merged_dyn_sizes
from returnn.tensor.data import Data
from returnn.tensor.dim import Dim
from returnn.tf.layers.base import LayerBase, LayerContext, LayerOpts, layer_ref, register_layer
from returnn.tf.layers.seq_ops import clone_dim
from returnn.tf.layers.shape import axes_of, axis_of


class _DotPlan:
    """How two templates contract: reduce pairs, shared (batch) dims, free dims, the output dims."""

    def __init__(self, ctx: LayerContext, a: Data, b: Data, opts: Any):
        red1, red2 = self._reduce_axes(ctx, a, b, opts)
        var1 = axes_of(ctx, a, opts.var1, "var1") if opts.var1 is not None else []
        var2 = axes_of(ctx, b, opts.var2, "var2") if opts.var2 is not None else []
        for i, j in zip(red1, red2):
            da, db = a.dims[i], b.dims[j]
            if not (da is db or da.matches(db) or (da.size is not None and da.size == db.size)):
                raise ctx.error(f'"red1" / "red2": cannot reduce {da.describe()} of {a.name!r} with '
                                f"{db.describe()} of {b.name!r}: sizes differ")
        if set(red1) & set(var1) or set(red2) & set(var2):
            raise ctx.error('"var1" / "var2" overlap with the reduced axes')
        rest_a = [i for i in range(a.batch_ndim) if i not in red1 + var1]
        rest_b = [j for j in range(b.batch_ndim) if j not in red2 + var2]
        self.shared: list[tuple[int, int]] = []
        for i in rest_a:
            j = next((j for j in rest_b if b.dims[j] is a.dims[i] and j not in [p[1] for p in self.shared]), None)
            if j is not None:
                self.shared.append((i, j))
        shared_a, shared_b = [p[0] for p in self.shared], [p[1] for p in self.shared]
        self.free1 = var1 + [i for i in rest_a if i not in shared_a]
        self.free2 = var2 + [j for j in rest_b if j not in shared_b]
        self.red = list(zip(red1, red2))
        out_a = [a.dims[i] for i in shared_a + self.free1]
        self.out_b = [b.dims[j] for j in self.free2]
        self.clones = {k: clone_dim(dim, f"{ctx.name}:{dim.name}") for k, dim in enumerate(self.out_b) if dim in out_a}
        self.out_dims = out_a + [self.clones.get(k, dim) for k, dim in enumerate(self.out_b)]

    @staticmethod
    def _reduce_axes(ctx: LayerContext, a: Data, b: Data, opts: Any) -> tuple[list[int], list[int]]:
        """Axes to contract in each source, paired by position."""
        if opts.reduce is not None:
            red1, red2 = axes_of(ctx, a, opts.reduce, "reduce"), axes_of(ctx, b, opts.reduce, "reduce")
        elif opts.red1 is not None and opts.red2 is not None:
            red1, red2 = axes_of(ctx, a, opts.red1, "red1"), axes_of(ctx, b, opts.red2, "red2")
        else:
            raise ctx.error('needs "red1" and "red2" (or "reduce"), e.g. "red1": "F", "red2": "F"')
        if len(red1) != len(red2) or not red1:
            raise ctx.error(f'"red1" / "red2": need the same number of axes (at least one), got {len(red1)} and '
                            f"{len(red2)}")
        return red1, red2

    def equation(self, a: Data, b: Data) -> str:
        """The einsum equation ``a,b->out``."""
        letters = iter(string.ascii_letters)
        la, lb = [""] * a.batch_ndim, [""] * b.batch_ndim
        for i, j in self.red + self.shared:
            la[i] = lb[j] = next(letters)
        for i in self.free1:
            la[i] = next(letters)
        for j in self.free2:
            lb[j] = next(letters)
        out = "".join(la[i] for i, _ in self.shared) + "".join(la[i] for i in self.free1)
        out += "".join(lb[j] for j in self.free2)
        return f"{''.join(la)},{''.join(lb)}->{out}"


@register_layer("dot")
class DotLayer(LayerBase):
    """Contraction of two sources: ``red1`` of the first with ``red2`` of the second, batched over shared dims.

    Config: ``{"class": "dot", "from": ["q", "k"], "red1": "F", "red2": "F", "var1": "T", "var2": "T"}`` gives
    [B, T_q, T_k] attention energies; ``"reduce": "T"`` names the same axis in both. ``var1`` / ``var2`` keep
    axes apart even when both sources have them (a dim of both is shared otherwise). Padded frames of the
    reduced dynamic axes count as 0. Output: shared dims, free dims of the first, free dims of the second.
    """

    example = {"from": ["data", "data"], "red1": "F", "red2": "F", "var1": "T", "var2": "T"}

    class Opts(LayerOpts):
        red1: Any = None
        red2: Any = None
        var1: Any = None
        var2: Any = None
        reduce: Any = None
        add_var2_if_empty: bool = False

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        if len(ctx.sources) != 2:
            raise ctx.error(f'needs exactly 2 sources in "from", got {len(ctx.sources)}')
        a, b = ctx.sources
        if a.sparse or b.sparse:
            raise ctx.error(f"needs dense sources, got {a.describe()} and {b.describe()}")
        plan = _DotPlan(ctx, a, b, opts)
        dims = list(plan.out_dims)
        if opts.add_var2_if_empty and not plan.free2:
            dims.append(Dim(1, f"{ctx.name}:var2", kind="spatial"))
        ctx.state["plan"] = plan
        feature = dims[-1] if dims and dims[-1].kind == "feature" else None
        return a.copy_template(ctx.name).with_dims(dims, feature_dim=feature)

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.plan: _DotPlan = ctx.state["plan"]
        self.add_var2 = opts.add_var2_if_empty and not self.plan.free2

    def __call__(self, sources: Sequence[Data], *, train: bool) -> Data:
        a, b = sources
        y = tf.einsum(self.plan.equation(a, b), a.masked_tensor(), b.masked_tensor())
        if self.add_var2:
            y = y[..., None]
        sizes = merged_dyn_sizes(sources)
        for k, clone in self.plan.clones.items():
            if clone.is_dynamic:
                sizes[clone] = b.get_dyn_size(self.plan.out_b[k])
        return self.out.with_tensor(y, dyn_sizes=sizes)


@register_layer("softmax_over_spatial")
class SoftmaxOverSpatialLayer(LayerBase):
    """Softmax along a spatial axis (default the time axis); padded frames get probability 0.

    Config: ``{"class": "softmax_over_spatial", "from": "energy", "axis": "stag:enc:time"}``; ``energy_factor``
    scales the logits first, ``log_space`` gives log-probabilities (masked frames: -inf). ``start`` (a layer
    of [B] positions) also masks the frames before it; ``window_start`` (such a layer, or an int) with
    ``window_size`` keeps only the frames ``window_start <= t < window_start + window_size``.
    """

    example = {"from": "data", "energy_factor": 0.5, "window_start": 1, "window_size": 3}

    class Opts(LayerOpts):
        axis: Any = None
        energy_factor: float | None = None
        use_time_mask: bool = True
        log_space: bool = False
        start: str | None = layer_ref()
        window_start: str | int | None = layer_ref()
        window_size: int | None = None

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        data = ctx.input_template()
        cls._axis(ctx, data, opts)
        if (opts.window_start is None) != (opts.window_size is None):
            raise ctx.error('"window_start" and "window_size" go together')
        if opts.window_size is not None and opts.window_size < 1:
            raise ctx.error(f'"window_size": expected a positive int, got {opts.window_size}')
        for name in ("start", "window_start"):
            ref = getattr(opts, name)
            if isinstance(ref, str):
                pos = ctx.ref_templates[ref]
                if pos.batch_ndim != 1 or pos.batch_dim_axis is None or data.batch_dim_axis is None:
                    raise ctx.error(f'"{name}": expected a [B] layer of positions, got {pos.describe()}')
        return data

    @staticmethod
    def _axis(ctx: LayerContext, data: Data, opts: Opts) -> int:
        """The softmax axis: ``axis``, else the time axis."""
        if opts.axis is not None:
            axis = axis_of(ctx, data, opts.axis, "axis")
        elif data.time_dim is not None:
            axis = data.time_dim_axis
        else:
            raise ctx.error(f'"axis": {data.describe()} has no time axis; name one')
        if data.dims[axis].is_batch or data.sparse:
            raise ctx.error(f'"axis": expected a spatial axis of dense data, got {data.describe()}')
        return axis

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.axis = self._axis(ctx, ctx.input_template(), opts)
        self.opts = opts

    def _mask(self, x: Data, refs: Mapping[str, Data]) -> Any:
        """Bool mask of the frames that take part (None: all of them), the shape of the input."""
        o, dim = self.opts, x.dims[self.axis]
        masks = []
        if o.use_time_mask and dim.is_dynamic and x.batch_dim_axis is not None:
            masks.append(x.mask_broadcast(dim))
        if o.start is not None or o.window_start is not None:
            shape = [1] * x.batch_ndim
            shape[self.axis] = -1
            t = tf.reshape(tf.range(tf.shape(x.tensor)[self.axis]), shape)
            for ref, size in ((o.start, None), (o.window_start, o.window_size)):
                if ref is None:
                    continue
                pos = tf.constant(ref) if isinstance(ref, int) else tf.cast(refs[ref].tensor, tf.int32)
                if not isinstance(ref, int):
                    b_shape = [1] * x.batch_ndim
                    b_shape[x.batch_dim_axis] = -1
                    pos = tf.reshape(pos, b_shape)
                masks.append(t >= pos if size is None else (t >= pos) & (t < pos + size))
        if not masks:
            return None
        mask = tf.broadcast_to(masks[0], tf.shape(x.tensor))
        for extra in masks[1:]:
            mask = mask & extra
        return mask

    def __call__(self, sources: Sequence[Data], *, train: bool, refs: Mapping[str, Data] | None = None) -> Data:
        x = self.input_data(sources)
        logits = x.tensor if self.opts.energy_factor is None else x.tensor * self.opts.energy_factor
        mask = self._mask(x, refs or {})
        if mask is not None:  # finite, so a row without any valid frame gives no NaN (value or gradient)
            logits = tf.where(mask, logits, logits.dtype.min)
        y = (tf.nn.log_softmax if self.opts.log_space else tf.nn.softmax)(logits, axis=self.axis)
        if mask is not None:
            y = tf.where(mask, y, tf.cast(-math.inf if self.opts.log_space else 0.0, y.dtype))
        return self.out.with_tensor(y, like=x)


@register_layer("generic_attention")
class GenericAttentionLayer(LayerBase):
    """Weighted sum of ``base`` over its time axis with given ``weights``: [B, weights' other axes..., F].

    Config: ``{"class": "generic_attention", "weights": "att_weights", "base": "base:enc_value"}``, e.g. with
    weights from softmax_over_spatial: [B, T_enc] inside a rec loop gives [B, F]. The weights' axis with the
    base's time dim (else their time axis) is summed against the base's time axis; their other axes stay,
    size-1 ones squeezed away (``auto_squeeze``) unless the base has them too. Padded base frames count as 0.
    No "from": base and weights are the inputs.
    """

    example = {"from": [], "weights": "w", "base": "data"}
    example_extra = {"e": {"class": "reduce", "from": "data", "mode": "sum", "axes": "F"},
                     "w": {"class": "softmax_over_spatial", "from": "e"}}
    default_from = None

    class Opts(LayerOpts):
        weights: str | None = layer_ref()
        base: str | None = layer_ref()
        auto_squeeze: bool = True

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        if ctx.sources:
            raise ctx.error(f'takes no "from" (the inputs are "weights" and "base"), got {ctx.source_names}')
        for name in ("weights", "base"):
            if getattr(opts, name) is None:
                raise ctx.error(f'"{name}": required, the name of a layer')
        weights, base = cls._weights(ctx, opts), ctx.ref_templates[opts.base]
        if base.batch_dim_axis is None or base.time_dim is None or base.feature_dim is None:
            raise ctx.error(f'"base": expected [B, T, ..., F], got {base.describe()}')
        plan = _DotPlan(ctx, weights, base, cls._dot_axes(ctx, weights, base))
        ctx.state["plan"], ctx.state["weights"] = plan, weights
        return base.copy_template(ctx.name).with_dims(plan.out_dims, feature_dim=plan.out_dims[-1], dtype="float32")

    @staticmethod
    def _weights(ctx: LayerContext, opts: Opts) -> Data:
        """The weights template without the size-1 axes ``auto_squeeze`` drops."""
        weights, base = ctx.ref_templates[opts.weights], ctx.ref_templates[opts.base]
        if weights.sparse or weights.batch_dim_axis is None:
            raise ctx.error(f'"weights": expected dense weights with a batch axis, got {weights.describe()}')
        if not opts.auto_squeeze:
            return weights
        keep = [dim for dim in weights.dims
                if dim.size != 1 or dim is weights.time_dim or base.find_axis(dim) is not None]
        return weights.with_dims(keep)

    @staticmethod
    def _dot_axes(ctx: LayerContext, weights: Data, base: Data) -> Any:
        """Which axes the dot plan reduces (weights' time vs the base's) and keeps (the base's feature)."""
        axis = weights.find_axis(base.time_dim)
        if axis is None:
            axis = weights.time_dim_axis
        if axis is None:
            raise ctx.error(f'"weights": {weights.describe()} has neither the time dim of "base" '
                            f"{base.describe()} nor a time axis")
        rest = [i for i in range(weights.batch_ndim) if i not in (axis, weights.batch_dim_axis)
                and base.find_axis(weights.dims[i]) is None]
        return types.SimpleNamespace(reduce=None, red1=[axis], red2=[base.time_dim_axis], var1=rest,
                                     var2=[base.feature_dim_axis])

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.plan: _DotPlan = ctx.state["plan"]
        self.weights_template: Data = ctx.state["weights"]
        self.opts = opts

    def __call__(self, sources: Sequence[Data], *, train: bool, refs: Mapping[str, Data] | None = None) -> Data:
        weights, base = refs[self.opts.weights], refs[self.opts.base]
        squeezed = [i for i, dim in enumerate(weights.dims) if dim not in self.weights_template.dims]
        if squeezed:
            weights = self.weights_template.with_tensor(tf.squeeze(weights.tensor, squeezed), like=weights)
        y = tf.einsum(self.plan.equation(weights, base), weights.masked_tensor(), base.masked_tensor())
        return self.out.with_tensor(y, dyn_sizes=merged_dyn_sizes([weights, base]))


def sinusoidal_encoding(positions: Any, n: int) -> Any:
    """Sines and cosines of ``positions`` [...] at geometric timescales 1 .. 1e4 -> [..., n]."""
    half = n // 2
    increment = math.log(1.0e4) / max(half - 1, 1)
    inv_timescales = tf.exp(tf.range(half, dtype=tf.float32) * -increment)
    scaled = tf.cast(positions, tf.float32)[..., None] * inv_timescales
    signal = tf.concat([tf.sin(scaled), tf.cos(scaled)], axis=-1)
    if n % 2:
        signal = tf.pad(signal, [[0, 0]] * (len(signal.shape) - 1) + [[0, 1]])
    return signal


@register_layer("positional_encoding")
class PositionalEncodingLayer(LayerBase):
    """Sinusoidal position encoding along the time axis ([T, n_out]), or added to the input (``add_to_input``).

    Config: ``{"class": "positional_encoding", "from": "emb", "add_to_input": True}``. ``constant`` >= 0 uses
    that position for every frame (a decoder step); ``offset`` (a layer of [B] ints) shifts each sequence.
    Inside a rec loop (input without time axis) it encodes the step index: [B, n_out], or input + encoding;
    its loop state is empty, it only needs the step index.
    """

    @classmethod
    def runs_on_sequences(cls, layer_dict: Mapping[str, Any]) -> bool:
        # the step index is the position: over a time-varying input the same frames (added to it, no constant)
        return bool(layer_dict.get("add_to_input")) and layer_dict.get("constant", -1) < 0

    example = {"from": "data", "add_to_input": True}

    class Opts(LayerOpts):
        add_to_input: bool = False
        n_out: int | None = None
        out_dim: Dim | None = None
        constant: int = -1
        offset: str | None = layer_ref()

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        data = ctx.input_template()
        in_loop = ctx.inside_loop and data.time_dim is None
        if data.time_dim is None and not in_loop:
            raise ctx.error(f"input {data.describe()} has no time axis (only inside a rec loop, where the step "
                            f"index is the position)")
        offset = None
        if opts.offset is not None:
            offset = ctx.ref_templates[opts.offset]
            if offset.batch_ndim != 1 or offset.batch_dim_axis is None:
                raise ctx.error(f'"offset": expected a [B] layer of ints, got {offset.describe()}')
        if opts.add_to_input:
            if data.sparse or data.feature_dim is None or data.feature_dim.size is None:
                raise ctx.error(f'"add_to_input": needs dense input with a static feature dim, got {data.describe()}')
            if opts.n_out is not None and opts.n_out != data.feature_dim.size:
                raise ctx.error(f'"n_out" {opts.n_out} must equal the input feature dim with "add_to_input"')
            return data
        feature = ctx.out_feature_dim(opts.n_out, opts.out_dim)
        if in_loop:
            if data.batch_dim_axis is None:
                raise ctx.error(f"inside a rec loop, the input needs a batch axis, got {data.describe()}")
            dims = [data.dims[data.batch_dim_axis], feature]
        else:
            dims = [data.time_dim, feature] if offset is None else [offset.dims[0], data.time_dim, feature]
        return data.copy_template(ctx.name).with_dims(dims, feature_dim=feature, time_dim=data.time_dim,
                                                      dtype="float32", sparse_dim=None)

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.opts = opts
        self.in_loop = ctx.inside_loop and ctx.input_template().time_dim is None

    def __call__(self, sources: Sequence[Data], *, train: bool, refs: Mapping[str, Data] | None = None) -> Data:
        if self.in_loop:
            raise self.ctx.error("inside a rec loop this layer runs through step (it needs the step index)")
        x = self.input_data(sources)
        n_time = tf.shape(x.tensor)[x.time_dim_axis]
        positions = tf.range(n_time) if self.opts.constant < 0 else tf.fill([n_time], self.opts.constant)
        if self.opts.offset is not None:
            positions = positions[None, :] + tf.cast(refs[self.opts.offset].tensor, tf.int32)[:, None]
        signal = sinusoidal_encoding(positions, self.out.feature_dim.size)
        if not self.opts.add_to_input:
            return self.out.with_tensor(signal, like=x)
        batch = (x.dims[x.batch_dim_axis],) if self.opts.offset is not None else ()
        return self._added(x, Data("encoding", (*batch, x.time_dim, x.feature_dim), tensor=signal))

    @staticmethod
    def _added(x: Data, encoding: Data) -> Data:
        """``x`` plus the encoding, aligned to ``x``'s dims."""
        try:
            y = x.tensor + tf.cast(aligned_tensor(encoding, x.dims), x.tensor.dtype)
        except LayerConfigError as exc:
            raise LayerConfigError(f'"add_to_input": {exc}') from None
        return x.replace(tensor=y)

    def initial_state(self, batch_size: Any) -> Any:
        """Inside a rec loop: an empty state (not None), so that the loop calls ``step`` with the index."""
        return () if self.in_loop else None

    def step(self, sources: Sequence[Data], state: Any, *, train: bool, i: Any,
             refs: Mapping[str, Data] | None = None) -> tuple[Data, Any]:
        """The encoding of position ``i`` (or ``constant``), plus ``offset``: [B, n_out], or added to the frame."""
        x = self.input_data(sources)
        position = tf.reshape(tf.cast(i, tf.int32) if self.opts.constant < 0 else tf.constant(self.opts.constant), [1])
        if self.opts.offset is not None:
            position = position + tf.cast(refs[self.opts.offset].tensor, tf.int32)
        batch_dim = x.dims[x.batch_dim_axis]
        signal = sinusoidal_encoding(position, self.out.feature_dim.size)  # [1 or B, n_out]
        if self.opts.add_to_input:
            return self.out.with_tensor(self._added(x, Data("encoding", (batch_dim, x.feature_dim),
                                                            tensor=signal)).tensor, like=x), state
        signal = tf.broadcast_to(signal, [tf.shape(x.tensor)[x.batch_dim_axis], self.out.feature_dim.size])
        return self.out.with_tensor(signal, like=x), state
