"""Multi-head self-attention over the time axis, whole sequences or one step at a time inside a rec loop."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import tensorflow as tf

from returnn.tensor.data import Data
from returnn.tensor.dim import Dim
from returnn.tf.layers.base import LayerBase, LayerContext, LayerOpts, register_layer


@register_layer("self_attention")
class SelfAttentionLayer(LayerBase):
    """Multi-head dot-product self-attention over time: per head ``softmax(q k^T / sqrt(d_k)) v``, heads concatenated.

    Config: ``{"class": "self_attention", "from": "x", "num_heads": 8, "total_key_dim": 512, "n_out": 512,
    "attention_left_only": True}``. Keys are the valid frames of each sequence; ``attention_left_only`` masks
    the future too (causal). Inside a rec loop (a frame [B, F] as input) it needs ``attention_left_only``: each
    step appends its key and value to the layer's state and attends over all steps so far, which gives the
    causal whole-sequence output at that frame. ``attention_dropout`` drops attention weights in training.
    Not supported yet: ``key_shift`` (relative positions), ``initial_state``, ``state_var_lengths``.

    Params: ``QKV`` [in, 2 * total_key_dim + n_out] (RETURNN's layout): split into ``num_heads`` equal column
    blocks, one per head, each holding that head's query, key and value columns in turn.
    """

    @classmethod
    def runs_on_sequences(cls, layer_dict: Mapping[str, Any]) -> bool:
        return bool(layer_dict.get("attention_left_only"))  # causal: each step sees the frames so far

    example = {"from": "data", "num_heads": 2, "total_key_dim": 4, "n_out": 6, "attention_left_only": True}

    class Opts(LayerOpts):
        num_heads: int
        total_key_dim: int
        n_out: int | None = None
        out_dim: Dim | None = None
        attention_left_only: bool = False
        attention_dropout: float = 0.0
        forward_weights_init: str | float = "glorot_uniform"
        key_shift: str | None = None

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        data = ctx.input_template()
        if opts.key_shift is not None:
            raise ctx.error('"key_shift": not supported here yet (relative positions need a '
                            'relative_positional_encoding layer, which does not exist here)')
        feature = ctx.out_feature_dim(opts.n_out, opts.out_dim)
        for name, size in (("num_heads", opts.num_heads), ("total_key_dim", opts.total_key_dim),
                           ("n_out", feature.size)):
            if size is None or size <= 0:
                raise ctx.error(f'"{name}": expected a positive int, got {size}')
        for name, size in (("total_key_dim", opts.total_key_dim), ("n_out", feature.size)):
            if size % opts.num_heads:
                raise ctx.error(f'"{name}" {size} is not divisible by "num_heads" {opts.num_heads}')
        if not 0.0 <= opts.attention_dropout < 1.0:
            raise ctx.error(f'"attention_dropout": expected a rate in [0, 1), got {opts.attention_dropout}')
        if data.dim is None:
            raise ctx.error(f"input {data.describe()} needs a static feature dim (or vocab size), for QKV")
        data = data.copy_as_batch_major()
        in_loop = ctx.inside_loop and data.time_dim is None
        want = [data.batch_dim_axis, data.feature_dim_axis] if in_loop else [data.batch_dim_axis, data.time_dim_axis,
                                                                            data.feature_dim_axis]
        if data.batch_dim_axis is None or sorted(a for a in want if a is not None) != list(range(data.batch_ndim)):
            shape = "[B, F] inside a rec loop" if ctx.inside_loop else "[B, T, F]"
            raise ctx.error(f"expected input {shape}, got {data.describe()}")
        if in_loop and not opts.attention_left_only:
            raise ctx.error('"attention_left_only": inside a rec loop only the steps so far are known; set it to True')
        dims = [data.dims[0]] if in_loop else [data.dims[0], data.time_dim]
        return data.copy_template(ctx.name).with_dims([*dims, feature], feature_dim=feature, sparse_dim=None,
                                                      dtype="float32")

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.opts = opts
        self.in_loop = ctx.inside_loop and ctx.input_template().time_dim is None
        self.heads = opts.num_heads
        self.key_dim = opts.total_key_dim // opts.num_heads
        self.value_dim = self.out.feature_dim.size // opts.num_heads
        n_total = 2 * opts.total_key_dim + self.out.feature_dim.size
        self.QKV = self.add_param("QKV", (ctx.input_template().dim, n_total), init=opts.forward_weights_init)

    def _qkv(self, x: Data) -> tuple[Any, Any, Any]:
        """Scaled queries, keys, values, each [B, heads, T, per-head dim], of ``x`` ([B, T, F]; [B, F] is one frame)."""
        x = x.copy_as_batch_major().copy_with_feature_last()
        tensor = x.tensor if x.time_dim is not None else x.tensor[:, None]
        if x.sparse:
            y = tf.gather(self.QKV, tf.cast(tensor, tf.int32))
        else:
            y = tf.tensordot(tensor, self.QKV, axes=1)
        shape = tf.shape(y)
        y = tf.reshape(y, [shape[0], shape[1], self.heads, 2 * self.key_dim + self.value_dim])
        q, k, v = tf.split(tf.transpose(y, [0, 2, 1, 3]), [self.key_dim, self.key_dim, self.value_dim], axis=-1)
        return q * self.key_dim ** -0.5, k, v

    def _attend(self, q: Any, k: Any, v: Any, mask: Any, *, train: bool) -> Any:
        """Heads attend from ``q`` over ``k`` / ``v`` where ``mask`` (broadcasting to [B, H, Tq, Tk]) holds:
        [B, Tq, heads * value dim]."""
        energy = tf.matmul(q, k, transpose_b=True)
        if mask is not None:  # finite, so a row without any valid key gives no NaN
            energy = tf.where(mask, energy, energy.dtype.min)
        weights = tf.nn.softmax(energy, axis=-1)
        if train and self.opts.attention_dropout:
            weights = tf.nn.dropout(weights, rate=self.opts.attention_dropout)
        y = tf.transpose(tf.matmul(weights, v), [0, 2, 1, 3])  # [B, Tq, H, value dim]
        shape = tf.shape(y)
        return tf.reshape(y, [shape[0], shape[1], self.heads * self.value_dim])

    def __call__(self, sources: Sequence[Data], *, train: bool) -> Data:
        if self.in_loop:
            raise self.ctx.error("inside a rec loop this layer runs through step (it carries keys and values)")
        x = self.input_data(sources).copy_as_batch_major()
        q, k, v = self._qkv(x)
        n_time = tf.shape(q)[2]
        if self.opts.attention_left_only:  # frame t sees frames <= t, all valid when t is
            mask = tf.linalg.band_part(tf.ones([n_time, n_time], tf.bool), -1, 0)
        else:
            mask = tf.sequence_mask(x.get_dyn_size(x.time_dim), maxlen=n_time)[:, None, None, :]
        return self.out.with_tensor(self._attend(q, k, v, mask, train=train), like=x)

    def initial_state(self, batch_size: Any) -> Any:
        """Inside a rec loop: no keys and values yet, ``{"k_left": [B, H, 0, d_k], "v_left": [B, H, 0, d_v]}``."""
        if not self.in_loop:
            return None
        return {"k_left": tf.zeros([batch_size, self.heads, 0, self.key_dim]),
                "v_left": tf.zeros([batch_size, self.heads, 0, self.value_dim])}

    def step(self, sources: Sequence[Data], state: Any, *, train: bool, i: Any,
             refs: Mapping[str, Data] | None = None) -> tuple[Data, Any]:
        """This frame's query over the keys and values of all steps so far, its own appended (the new state)."""
        x = self.input_data(sources)
        q, k, v = self._qkv(x)
        k = tf.concat([state["k_left"], k], axis=2)
        v = tf.concat([state["v_left"], v], axis=2)
        y = self._attend(q, k, v, None, train=train)[:, 0]
        return self.out.with_tensor(y, like=x), {"k_left": k, "v_left": v}
