"""The ``rec`` layer with a unit string: a recurrent unit over whole sequences, forward or backward."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import tensorflow as tf

from returnn.tensor.data import Data
from returnn.tensor.dim import Dim
from returnn.tf.initializers import get_initializer, param_seed
from returnn.tf.layers.base import LayerBase, LayerContext, LayerOpts, module_name, register_layer
from returnn.tf.layers.opts import did_you_mean
from returnn.tf.layers.rec.subnet import RecLoop, check_unit_dict, plan_loop
from returnn.tf.layers.rec.units import UNITS, RecUnit, make_unit


@register_layer("rec")
class RecLayer(LayerBase):
    """A recurrent unit (LSTM variants, GRU, vanilla RNN) over each sequence's valid frames.

    Config: ``{"class": "rec", "unit": "lstm", "from": "data", "n_out": 256, "direction": -1}``.
    ``unit``: nativelstm / lstm (default; the fused native op), nativelstm2, lstmblock, standardlstm,
    cudnnlstm (GPU), gru, rnn; ``unit_opts`` go to the unit. ``direction`` -1 runs backwards in time.
    The output is time-major [T, B, n_out], zero on padded frames.
    Params: ``W`` [in, gates * out], ``W_re`` [out, gates * out], ``b`` [gates * out].
    """

    example = {"from": "data", "unit": "standardlstm", "n_out": 3, "direction": -1}

    class Opts(LayerOpts):
        unit: str | dict = "nativelstm"
        n_out: int | None = None
        out_dim: Dim | None = None
        direction: int = 1
        unit_opts: dict | None = None
        max_seq_len: int | str | None = None
        size_target: str | None = None
        include_eos: bool = False
        optimize_move_layers_out: bool | None = None
        forward_weights_init: str | float | None = None
        recurrent_weights_init: str | float | None = None
        bias_init: str | float = 0.0

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        if isinstance(opts.unit, dict):
            check_unit_dict(ctx, opts.unit)
            plan = plan_loop(ctx, opts.unit, size_target=opts.size_target, max_seq_len=opts.max_seq_len)
            ctx.state["loop_plan"] = plan
            ctx.state["nested_networks"] = [plan.loop]
            return plan.stacked["output"].copy_template(ctx.name)
        if opts.unit.lower() not in UNITS:
            raise ctx.error(f'"unit": unknown unit {opts.unit!r}{did_you_mean(opts.unit.lower(), UNITS)}; '
                            f"known: {', '.join(sorted(UNITS))}")
        if opts.direction not in (1, -1):
            raise ctx.error(f'"direction": expected 1 or -1, got {opts.direction!r}')
        src = ctx.input_template()
        if src.sparse or src.feature_dim is None or src.feature_dim.size is None:
            raise ctx.error(f"needs dense input with a static feature dim, got {src.describe()}")
        if src.time_dim is None or src.batch_dim_axis is None:
            raise ctx.error(f"needs input with a batch and a time axis, got {src.describe()}")
        out_dim = ctx.out_feature_dim(opts.n_out, opts.out_dim)
        return src.copy_as_time_major().copy_with_feature_last().with_feature_dim(out_dim)

    @classmethod
    def nested_net_dicts(cls, layer_dict: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        unit = layer_dict.get("unit")
        return [unit] if isinstance(unit, Mapping) else []

    @classmethod
    def sub_template(cls, ctx: LayerContext, sub: str) -> Data | None:
        plan = ctx.state.get("loop_plan")
        return None if plan is None else plan.stacked.get(sub)

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.loop: RecLoop | None = None
        if isinstance(opts.unit, dict):
            self.loop = RecLoop(self, ctx, ctx.state["loop_plan"], include_eos=opts.include_eos)
            self.params.update(self.loop.params())
            return
        self.direction = opts.direction
        path = ctx.network.path_of(ctx.name)
        scope, _, leaf = path.rpartition("/")
        with tf.name_scope(f"{scope}/" if scope else ""):
            self.unit: RecUnit = make_unit(
                opts.unit, n_in=ctx.input_template().dim, n_out=self.out.dim, name=module_name(leaf),
                param_init=self._init_fn([opts.forward_weights_init, opts.recurrent_weights_init], path),
                bias_init=self._init_fn([opts.bias_init], f"{path}/b"), unit_opts=opts.unit_opts)
        self._adopt_unit_params()

    def _init_fn(self, specs: Sequence[Any], name: str) -> Any:
        """Unit initializer (shape, dtype) -> tensor from our seeded RNG, one stream per call.

        The n-th call uses ``specs[n]`` (the units make ``W`` first, then ``W_re``); a None spec, or
        one past the end, falls back to the previous one, then to ``param_init``, then to glorot_uniform.
        """
        default = self.ctx.common.param_init if self.ctx.common.param_init is not None else "glorot_uniform"
        chosen = []
        for spec in specs:
            chosen.append(spec if spec is not None else (chosen[-1] if chosen else default))
        initializers = [get_initializer(spec) for spec in chosen]
        calls = []

        def init(shape: Sequence[int], dtype: tf.DType) -> Any:
            initializer = initializers[min(len(calls), len(initializers) - 1)]
            calls.append(shape)
            return initializer(shape, dtype, param_seed(self.ctx.network.random_seed, f"{name}#{len(calls)}"))

        return init

    def _adopt_unit_params(self) -> None:
        """The unit's variables as this layer's params, named after the layer path (shared or frozen if asked)."""
        for name, var in list(vars(self.unit).items()):
            if not isinstance(var, tf.Variable):
                continue
            shared = self.ctx.network.shared_param(self.ctx, name, tuple(var.shape))
            if shared is not None:
                var = shared
            elif not self.ctx.common.trainable or var.name.split(":")[0] != self.param_name(name):
                var = tf.Variable(var, trainable=self.ctx.common.trainable, name=self.param_name(name))
            setattr(self.unit, name, var)
            self.params[name] = var

    def nested_loss_entries(self) -> dict[str, Any]:
        return self.loop.loss_entries() if self.loop is not None else {}

    def call_with_subs(self, sources: Sequence[Data], *, train: bool,
                       refs: Mapping[str, Data] | None = None) -> tuple[Data, dict[str, Data]]:
        if self.loop is None:
            return self(sources, train=train), {}
        stacked = self.loop.run(sources, refs or {}, train=train,
                                input_data=self.input_data(sources) if sources else None)
        out = stacked["output"]
        return self.out.with_tensor(out.tensor, like=out).replace(logits=out.logits), stacked

    def __call__(self, sources: Sequence[Data], *, train: bool, refs: Mapping[str, Data] | None = None) -> Data:
        if self.loop is not None:
            return self.call_with_subs(sources, train=train, refs=refs)[0]
        x = self.input_data(sources).copy_as_time_major().copy_with_feature_last()
        y, _ = self.unit(x.tensor, x.get_dyn_size(x.time_dim), direction=self.direction, train=train)
        return self.out.with_tensor(y, like=x)
