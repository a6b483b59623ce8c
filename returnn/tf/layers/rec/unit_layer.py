"""What the ``rec`` (unit string) and ``rnn_cell`` layers share: a recurrent unit run over whole sequences,
or one frame per step inside a rec loop, and its last state as the sublayer ``"<name>/last_state"``.

Modes, fixed by the input template: outside a rec loop (or inside one, on an input that still has a time
axis) the unit runs over each sequence, input [T, B, n_in] -> output [T, B, n_out]; inside a rec loop on
an input without a time axis the layer is a cell: [B, n_in] -> [B, n_out], its loop state the unit's
state (``initial_state`` zeros, ``step`` = ``unit.step``).

Last state sublayers, [B, size] (RETURNN's ``get_last_hidden_state`` keys): ``last_state`` (key ``"*"``:
an LSTM's c and h concatenated, in that order; h for GRU and RNN), ``last_state/c``, ``last_state/h``
and ``last_state/flat`` (LSTM only). Over whole sequences it is the state at each sequence's last valid
frame (the start of the sequence for ``direction`` -1); inside a loop, the state after this step.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping, Sequence

import tensorflow as tf

from returnn.tensor.data import Data
from returnn.tensor.dim import FEATURE, Dim
from returnn.tf.initializers import get_initializer, param_seed
from returnn.tf.layers.base import LayerBase, LayerContext, module_name
from returnn.tf.layers.rec import initial_state as init_state
from returnn.tf.layers.rec.units import UNITS, RecUnit, State, make_unit, unit_key, unit_problem

LAST_STATE = "last_state"


class UnitLayerBase(LayerBase):
    """A layer running one recurrent unit (see the module docstring); subclasses declare ``Opts`` and
    call ``unit_out_template`` and ``make_layer_unit``."""

    frame_wise = True

    @classmethod
    def runs_steps(cls, ctx: LayerContext) -> bool:
        """Whether this layer runs one frame per step (inside a rec loop, on input without a time axis)."""
        return ctx.inside_loop and ctx.input_template().time_dim is None

    @classmethod
    def unit_out_template(cls, ctx: LayerContext, *, unit: str, unit_opts: dict | None, n_out: int | None,
                          out_dim: Dim | None, direction: int = 1) -> Data:
        """[T, B, n_out] over whole sequences, [B, n_out] per step; the unit and the input checked first."""
        problem = unit_problem(unit, unit_opts)
        if problem:
            raise ctx.error(problem)
        ctx.state["unit"] = unit
        src = ctx.input_template()
        if src.sparse or src.feature_dim is None or src.feature_dim.size is None:
            raise ctx.error(f"needs dense input with a static feature dim, got {src.describe()}")
        out_dim = ctx.out_feature_dim(n_out, out_dim)
        if cls.runs_steps(ctx):
            if direction != 1:
                raise ctx.error(f'"direction": {direction} needs a time axis; inside a rec loop this layer '
                                "runs one frame per step, in the loop's order")
            if src.batch_dim_axis is None or src.batch_ndim != 2:
                raise ctx.error(f"inside a rec loop needs input [B, F] (one frame), got {src.describe()}")
            return src.copy_as_batch_major().copy_with_feature_last().with_feature_dim(out_dim)
        if src.time_dim is None or src.batch_dim_axis is None or src.batch_ndim != 3:
            raise ctx.error(f"needs input with a time, a batch and a feature axis (or, inside a rec loop, one "
                            f"frame [B, F]), got {src.describe()}")
        return src.copy_as_time_major().copy_with_feature_last().with_feature_dim(out_dim)

    @classmethod
    def check_initial_state(cls, ctx: LayerContext, spec: Any, n_out: int) -> None:
        """Errors naming ``"initial_state"`` (see ``initial_state``); reads its layers."""
        if spec is not None:
            keys = UNITS[unit_key(ctx.state["unit"])].state_keys
            init_state.check(ctx, spec, keys, n_out, steps=cls.runs_steps(ctx))

    def make_layer_unit(self, unit: str, *, unit_opts: dict | None, weight_inits: Sequence[Any],
                        bias_init: Any, direction: int = 1, initial_state: Any = None) -> None:
        """``self.unit`` with its params named ``<layer path>/W``, ``W_re``, ``b`` (shared or frozen if asked).

        ``weight_inits``: initializers of ``W`` and ``W_re`` in that order (None: the previous one, then
        ``param_init``, then glorot_uniform).
        """
        ctx = self.ctx
        self.steps = self.runs_steps(ctx)
        self.direction = direction
        self.unit_name = unit_key(unit)
        scope, _, leaf = ctx.path.rpartition("/")
        with tf.name_scope(f"{scope}/" if scope else ""):
            self.unit: RecUnit = make_unit(
                unit, n_in=ctx.input_template().dim, n_out=self.out.dim, name=module_name(leaf),
                param_init=self._init_fn(weight_inits, ctx.path), bias_init=self._init_fn([bias_init], f"{ctx.path}/b"),
                unit_opts=unit_opts)
        self._adopt_unit_params()
        # a proxy, so that tf.Module does not wrap a dict (a wrapped dict is no Mapping)
        self.initial_state_spec = MappingProxyType(dict(initial_state)) if isinstance(initial_state, Mapping) \
            else initial_state
        self.initial_state_params = init_state.make_params(initial_state, self.unit.state_keys, self.out.dim,
                                                           self.add_param)
        self._last_state_templates: dict[str, Data] = ctx.state.setdefault("last_state_subs", {})

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
            return initializer(shape, dtype, param_seed(self.ctx.random_seed, f"{name}#{len(calls)}"))

        return init

    def _adopt_unit_params(self) -> None:
        """The unit's variables as this layer's params, named after the layer path (shared or frozen if asked)."""
        for name, var in list(vars(self.unit).items()):
            if not isinstance(var, tf.Variable):
                continue
            shared = self.ctx.shared_param(name, tuple(var.shape))
            if shared is not None:
                var = shared
            elif not self.ctx.common.trainable or var.name.split(":")[0] != self.param_name(name):
                var = tf.Variable(var, trainable=self.ctx.common.trainable, name=self.param_name(name))
            setattr(self.unit, name, var)
            self.params[name] = var

    # ---- last state sublayers ----

    @classmethod
    def sub_template(cls, ctx: LayerContext, sub: str) -> Data | None:
        """Template [B, size] of ``"<name>/last_state"`` (or ``/c``, ``/h``, ``/flat``); asking for one makes
        the layer compute it."""
        asked = ctx.state.setdefault("last_state_subs", {})
        if sub not in asked:
            size = cls._last_state_size(ctx, sub)
            batch = ctx.out.dims[ctx.out.batch_dim_axis]
            dim = Dim(size, f"{ctx.path}/{sub}:feature", kind=FEATURE)
            asked[sub] = Data(f"{ctx.name}/{sub}", (batch, dim), dtype=ctx.out.dtype)
        return asked[sub]

    @staticmethod
    def _last_state_size(ctx: LayerContext, sub: str) -> int:
        """Feature size of a last state sublayer; other names are an error listing the valid ones."""
        unit = ctx.state["unit"]
        keys = UNITS[unit_key(unit)].state_keys
        valid = [LAST_STATE] + ([f"{LAST_STATE}/{key}" for key in (*keys, "flat")] if keys else [])
        if sub not in valid:
            what = (f"the state ({', '.join(keys)}) ('last_state' is them concatenated)" if keys
                    else "one state tensor (h)")
            raise ctx.error(f"no sublayer {sub!r}; unit {unit_key(unit)!r} has {what}; sublayers: "
                            + ", ".join(f"'{ctx.name}/{name}'" for name in valid))
        key = sub[len(LAST_STATE) + 1:]
        parts = len(keys) if keys and key in ("", "flat") else 1
        return parts * ctx.out.dim

    def _last_state_outputs(self, state: State) -> dict[str, Data]:
        """The asked-for last state sublayers from a unit state."""
        parts = list(state) if isinstance(state, tuple) else [state]
        outputs = {}
        for sub, template in self._last_state_templates.items():
            key = sub[len(LAST_STATE) + 1:]
            tensor = tf.concat(parts, axis=-1) if key in ("", "flat") else parts[self.unit.state_keys.index(key)]
            outputs[sub] = template.with_tensor(tensor)
        return outputs

    # ---- running ----

    def _initial_state(self, batch_size: Any, refs: Mapping[str, Data] | None = None) -> State | None:
        """The state before the first frame from ``initial_state`` (None: the unit's zeros)."""
        if self.initial_state_spec is None:
            return None
        return init_state.initial_state(self.initial_state_spec, self.unit.state_keys, batch=batch_size,
                                        n_out=self.out.dim, dtype=self.unit.dtype, params=self.initial_state_params,
                                        refs=refs or {})

    def run_sequences(self, sources: Sequence[Data], *, train: bool,
                      refs: Mapping[str, Data] | None = None) -> tuple[Data, State]:
        """The unit over each sequence: (output [T, B, n_out], state at each sequence's last valid frame)."""
        if self.steps:
            raise TypeError(f"{self.ctx.where()}: inside a rec loop this layer runs one frame per step: the loop "
                            "calls initial_state() and step(), not __call__")
        x = self.input_data(sources).copy_as_time_major().copy_with_feature_last()
        start = self._initial_state(tf.shape(x.tensor)[1], refs)
        y, final = self.unit(x.tensor, x.get_dyn_size(x.time_dim), direction=self.direction, train=train,
                             initial_state=start)
        return self.out.with_tensor(y, like=x), final

    def __call__(self, sources: Sequence[Data], *, train: bool, refs: Mapping[str, Data] | None = None) -> Data:
        return self.run_sequences(sources, train=train, refs=refs)[0]

    def call_with_subs(self, sources: Sequence[Data], *, train: bool,
                       refs: Mapping[str, Data] | None = None) -> tuple[Data, dict[str, Data]]:
        out, final = self.run_sequences(sources, train=train, refs=refs)
        return out, self._last_state_outputs(final)

    def initial_state(self, batch_size: Any) -> State | None:
        """The loop state before the first step when this layer runs per step (``initial_state``, default zeros),
        else None."""
        if not self.steps:
            return None
        start = self._initial_state(batch_size)
        return self.unit.zero_state(batch_size) if start is None else start

    def step(self, sources: Sequence[Data], state: State, *, train: bool, i: Any,
             refs: Mapping[str, Data] | None = None) -> tuple[Data, State]:
        """One frame [B, n_in] -> ([B, n_out], the unit's new state)."""
        x = self.input_data(sources).copy_as_batch_major().copy_with_feature_last()
        y, new_state = self.unit.step(x.tensor, state)
        return self.out.with_tensor(y, like=x), new_state

    def step_with_subs(self, sources: Sequence[Data], state: State, *, train: bool, i: Any,
                       refs: Mapping[str, Data] | None = None) -> tuple[Data, dict[str, Data], State]:
        """``step`` plus the asked-for last state sublayers (the state after this step)."""
        out, new_state = self.step(sources, state, train=train, i=i, refs=refs)
        return out, self._last_state_outputs(new_state), new_state


__all__ = ["LAST_STATE", "UnitLayerBase"]
