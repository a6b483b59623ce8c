"""Elementwise layers over several sources with broadcasting: combine (add, sub, mul, ...) and eval."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import tensorflow as tf

from returnn.errors import LayerConfigError
from returnn.tensor.align import aligned_tensor, common_dims, merged_dyn_sizes
from returnn.tensor.data import Data
from returnn.tensor.dim import Dim
from returnn.tf.layers.base import LayerBase, LayerContext, LayerOpts, register_layer
from returnn.tf.layers.opts import did_you_mean

COMBINE_KINDS: dict[str, Callable[[Sequence[Any]], Any]] = {
    "add": lambda xs: _fold(tf.add, xs),
    "sub": lambda xs: xs[0] - xs[1],
    "mul": lambda xs: _fold(tf.multiply, xs),
    "truediv": lambda xs: xs[0] / xs[1],
    "floordiv": lambda xs: xs[0] // xs[1],
    "maximum": lambda xs: _fold(tf.maximum, xs),
    "minimum": lambda xs: _fold(tf.minimum, xs),
    "average": lambda xs: _fold(tf.add, xs) / float(len(xs)),
    "squared_difference": lambda xs: tf.math.squared_difference(xs[0], xs[1]),
    "logical_and": lambda xs: _fold(tf.logical_and, xs),
    "logical_or": lambda xs: _fold(tf.logical_or, xs),
}
_BINARY = ("sub", "truediv", "floordiv", "squared_difference")


def _fold(op: Callable[[Any, Any], Any], xs: Sequence[Any]) -> Any:
    """``op(op(x0, x1), x2) ...``."""
    result = xs[0]
    for x in xs[1:]:
        result = op(result, x)
    return result


def broadcast_template(ctx: LayerContext) -> Data:
    """Template over the common (broadcast) dims of the sources, in the largest source's order."""
    if not ctx.sources:
        raise ctx.error('needs sources in "from"')
    dims = common_dims(ctx.sources)
    base = max(ctx.sources, key=lambda data: data.batch_ndim)
    feature = next((data.feature_dim for data in ctx.sources if data.feature_dim is not None), None)
    return base.copy_template(ctx.name).with_dims(dims, feature_dim=feature if feature in dims else None)


def broadcast_tensors(sources: Sequence[Data], dims: Sequence[Dim]) -> list[Any]:
    """Each source's tensor aligned to ``dims`` (size 1 where it lacks one)."""
    return [aligned_tensor(data, dims) for data in sources]


@register_layer("combine")
class CombineLayer(LayerBase):
    """Elementwise ``kind`` of the sources, broadcast over their common dims.

    Config: ``{"class": "combine", "kind": "add", "from": ["a", "b"]}``; kinds: add, sub, mul, truediv,
    floordiv, maximum, minimum, average, squared_difference, logical_and, logical_or.
    """

    frame_wise = True

    example = {"kind": "mul", "from": ["data", "data"]}

    class Opts(LayerOpts):
        kind: str

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        if opts.kind not in COMBINE_KINDS:
            raise ctx.error(f'"kind": unknown {opts.kind!r}{did_you_mean(opts.kind, COMBINE_KINDS)}; '
                            f"known: {', '.join(COMBINE_KINDS)}")
        if opts.kind in _BINARY and len(ctx.sources) != 2:
            raise ctx.error(f'"kind" {opts.kind!r} needs exactly 2 sources, got {len(ctx.sources)}')
        template = broadcast_template(ctx)
        return template.replace(dtype="bool") if opts.kind.startswith("logical_") else template

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.op = COMBINE_KINDS[opts.kind]

    def __call__(self, sources: Sequence[Data], *, train: bool) -> Data:
        y = self.op(broadcast_tensors(sources, self.out.dims))
        return self.out.with_tensor(y, dyn_sizes=merged_dyn_sizes(sources))


@register_layer("eval")
class EvalLayer(LayerBase):
    """A Python/TF expression over ``source(i)`` (the i-th source aligned to the common dims).

    Config: ``{"class": "eval", "from": ["a", "b"], "eval": "source(0) * tf.sigmoid(source(1))"}``.
    The expression sees ``source``, ``tf``, ``np`` and ``eval_locals``; ``out_type`` (``dim``, ``shape``,
    ``dtype``, ``sparse``) describes an output that differs from the inputs.
    """

    example = {"from": ["data", "data"], "eval": "source(0) * tf.sigmoid(source(1))"}

    class Opts(LayerOpts):
        eval: str
        eval_locals: dict | None = None
        out_type: dict | None = None

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        try:
            compile(opts.eval, f"<{ctx.name}>", "eval")
        except SyntaxError as exc:
            raise ctx.error(f'"eval": syntax error: {exc.msg} in {opts.eval!r}') from None
        template = broadcast_template(ctx)
        return cls._apply_out_type(ctx, template, opts.out_type or {})

    @staticmethod
    def _apply_out_type(ctx: LayerContext, template: Data, out_type: Mapping[str, Any]) -> Data:
        """``out_type``: ``dim`` (new feature / vocab size), ``shape`` (the non-batch dims, checked; its last entry
        the feature size), ``dtype``, ``sparse``."""
        unknown = sorted(set(out_type) - {"dim", "shape", "dtype", "sparse"})
        if unknown:
            raise ctx.error(f'"out_type": unknown keys {unknown}; known: dim, shape, dtype, sparse')
        if "shape" in out_type:
            out_type = {**out_type, **EvalLayer._dim_from_shape(ctx, template, out_type)}
        if "dtype" in out_type:
            template = template.replace(dtype=out_type["dtype"])
        if out_type.get("sparse"):
            dims = [dim for dim in template.dims if dim is not template.feature_dim]
            vocab = ctx.out_feature_dim(out_type.get("dim"), None)
            return template.with_dims(dims, sparse_dim=vocab, dtype=out_type.get("dtype", "int32"))
        if "dim" in out_type and out_type["dim"] != template.dim:
            template = template.with_feature_dim(ctx.out_feature_dim(out_type["dim"], None))
        return template

    @staticmethod
    def _dim_from_shape(ctx: LayerContext, template: Data, out_type: Mapping[str, Any]) -> dict[str, Any]:
        """``out_type["shape"]`` (without the batch axis) checked against the inputs' dims; gives ``dim``."""
        shape = tuple(out_type["shape"])
        dims = [dim for dim in template.dims if not dim.is_batch]
        sparse = out_type.get("sparse", False)
        expected = len(dims) - (1 if sparse and template.feature_dim is not None else 0)
        if len(shape) != expected:
            raise ctx.error(f'"out_type": "shape" {shape} has {len(shape)} axes; the inputs give {expected} besides '
                            f"the batch ({template.describe()})")
        kept = dims if not sparse else [dim for dim in dims if dim is not template.feature_dim]
        for size, dim in zip(shape[:-1] if not sparse else shape, kept):
            if size is not None and dim.size is not None and size != dim.size:
                raise ctx.error(f'"out_type": "shape" {shape}: size {size} where the inputs have {dim.describe()}')
        if sparse or not shape or shape[-1] is None:
            return {}
        if "dim" in out_type and out_type["dim"] != shape[-1]:
            raise ctx.error(f'"out_type": "dim" {out_type["dim"]} and "shape" {shape} disagree')
        return {"dim": shape[-1]}

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.code = compile(opts.eval, f"<{ctx.name}>", "eval")
        self.expression = opts.eval
        self.eval_locals = dict(opts.eval_locals or {})
        self.input_dims = common_dims(ctx.sources)  # the output's, unless "out_type" changed the feature dim

    def __call__(self, sources: Sequence[Data], *, train: bool) -> Data:
        tensors = broadcast_tensors(sources, self.input_dims)

        def source(i: int, **_: Any) -> Any:
            if not 0 <= i < len(tensors):
                raise LayerConfigError(f'"eval": source({i}) out of range; there are {len(tensors)} sources')
            return tensors[i]

        namespace = {"source": source, "tf": tf, "np": np, "train": train, **self.eval_locals}
        y = eval(self.code, namespace)  # noqa: S307 - the config's own code, as in RETURNN
        return self.out.with_tensor(tf.convert_to_tensor(y), dyn_sizes=merged_dyn_sizes(sources))
