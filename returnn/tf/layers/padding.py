"""Layers that move frames along an axis, per sequence: pad, window, prefix_in_time, postfix_in_time, shift_axis.

Each computes, for every output frame, which input frame it reads (-1: a fill value), and gathers per
sequence, so the padding of shorter sequences never leaks into valid frames.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import tensorflow as tf

from returnn.tensor.align import aligned_tensor
from returnn.tensor.data import Data
from returnn.tensor.dim import SPATIAL, Dim
from returnn.tf.layers.base import LayerBase, LayerContext, LayerOpts, layer_ref, register_layer
from returnn.tf.layers.seq_ops import batch_axis_layout, ceildiv, gather_frames, replace_dim, transpose_to
from returnn.tf.layers.shape import axes_of, no_batch_axis, non_batch_axis_of

PAD_MODES = ("constant", "reflect", "symmetric", "replication")


def _needs_batch(ctx: LayerContext, data: Data) -> None:
    """These layers work per sequence: the input needs a batch axis."""
    if data.batch_dim_axis is None:
        raise ctx.error(f"input {data.describe()} needs a batch axis")


def _resized(ctx: LayerContext, data: Data, axis: int, delta: int, tag: str) -> Data:
    """Template with the dim at ``axis`` grown by ``delta`` (a new dim unless ``delta`` is 0)."""
    old = data.dims[axis]
    if delta == 0:
        return data
    size = None if old.is_dynamic else old.size + delta
    if size is not None and size < 0:
        raise ctx.error(f"{old.describe()} would get a negative size {size}")
    return replace_dim(data, axis, Dim(size, f"{ctx.name}:{tag}", kind=old.kind))


def remap_axis(x: Data, axis: int, out: Data, positions: Any, new_lens: Any, fill: Any = 0.0) -> Data:
    """``out`` with frames of ``x`` along ``axis`` read at ``positions`` [B, T'] (-1 or out of range: ``fill``)."""
    tensor, rest = batch_axis_layout(x, axis)
    y = gather_frames(tensor, x.get_dyn_size(x.dims[axis]), positions, fill)
    new = out.dims[axis]
    y = transpose_to(y, [x.dims[x.batch_dim_axis], new, *rest], out.dims)
    sizes = {new: new_lens} if new.is_dynamic else {}
    return out.with_tensor(y, like=x, dyn_sizes=sizes)


def pad_positions(lens: Any, left: int, right: int, mode: str) -> tuple[Any, Any]:
    """Per sequence the input frame of each padded frame, and the new lengths ``lens + left + right``."""
    new_lens = lens + left + right
    t = tf.range(tf.reduce_max(new_lens))[None, :]
    src, n = t - left, lens[:, None]
    if mode == "constant":
        src = tf.where(src < 0, -1, src)
    elif mode == "reflect":
        src = tf.abs(src)
        src = tf.where(src >= n, 2 * (n - 1) - src, src)
    elif mode == "symmetric":
        src = tf.where(src < 0, -src - 1, src)
        src = tf.where(src >= n, 2 * n - 1 - src, src)
    if mode != "constant":
        src = tf.minimum(tf.maximum(src, 0), tf.maximum(n - 1, 0))
    return tf.where(t < new_lens[:, None], src, -1), new_lens


@register_layer("pad")
class PadLayer(LayerBase):
    """Frames added before/after each sequence along ``axes``.

    Config: ``{"class": "pad", "from": "x", "axes": "T", "padding": (2, 1), "mode": "reflect"}``. ``padding``:
    an int (both sides), ``(left, right)``, or one pair per axis. Modes: constant (``value``), reflect,
    symmetric, replication. On a dynamic axis the right padding follows each sequence's last frame.
    """

    example = {"from": "data", "axes": "T", "padding": (2, 1), "value": 1.5}

    class Opts(LayerOpts):
        axes: Any
        padding: int | Sequence[Any]
        value: float = 0.0
        mode: str = "constant"

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        data = ctx.input_template()
        _needs_batch(ctx, data)
        if opts.mode.lower() not in PAD_MODES:
            raise ctx.error(f'"mode": unknown {opts.mode!r}; known: {", ".join(PAD_MODES)}')
        for i, (axis, (left, right)) in enumerate(cls._pads(ctx, data, opts)):
            data = _resized(ctx, data, axis, left + right, f"pad{i}")
        return data

    @staticmethod
    def _pads(ctx: LayerContext, data: Data, opts: Opts) -> list[tuple[int, tuple[int, int]]]:
        """``(axis, (left, right))`` per padded axis."""
        axes = axes_of(ctx, data, opts.axes, "axes")
        no_batch_axis(ctx, data, axes, "axes")
        pad = opts.padding
        if isinstance(pad, int):
            pairs = [(pad, pad)] * len(axes)
        elif len(pad) == 2 and all(isinstance(p, int) for p in pad):
            pairs = [tuple(pad)] * len(axes)
        else:
            pairs = [tuple(p) if isinstance(p, (list, tuple)) else (p,) for p in pad]
        if len(pairs) != len(axes) or not all(len(p) == 2 and all(isinstance(v, int) and v >= 0 for v in p)
                                              for p in pairs):
            raise ctx.error(f'"padding": expected an int, (left, right) or one pair per axis ({len(axes)}) with '
                            f"values >= 0, got {pad!r}")
        return list(zip(axes, pairs))

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.pads = self._pads(ctx, ctx.input_template(), opts)
        self.value, self.mode = opts.value, opts.mode.lower()

    def __call__(self, sources: Sequence[Data], *, train: bool) -> Data:
        x = self.input_data(sources)
        for axis, (left, right) in self.pads:
            dims = list(x.dims)
            dims[axis] = self.out.dims[axis]
            target = x.copy_template().with_dims(dims)
            positions, new_lens = pad_positions(x.get_dyn_size(x.dims[axis]), left, right, self.mode)
            x = remap_axis(x, axis, target, positions, new_lens, self.value)
        return self.out.with_tensor(x.tensor, like=x)


class _InTimeLayer(LayerBase):
    """Base of prefix_in_time / postfix_in_time: ``repeat`` frames of a value or a layer before or after."""

    example = {"from": "data", "repeat": 2}
    at_start = True
    value_option = "prefix"

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Any) -> Data:
        data = ctx.input_template()
        _needs_batch(ctx, data)
        if data.time_dim is None:
            raise ctx.error(f"input {data.describe()} has no time axis")
        if not isinstance(opts.repeat, int) or opts.repeat < 0:
            raise ctx.error(f'"repeat": expected an int >= 0, got {opts.repeat!r}')
        value = getattr(opts, cls.value_option)
        if isinstance(value, str):
            fill = ctx.ref_templates[value]
            rest = [dim for dim in data.dims if dim is not data.time_dim]
            if not all(any(dim is own or own.matches(dim) for own in rest) for dim in fill.dims):
                raise ctx.error(f"{fill.describe()} does not broadcast to {data.describe()} without its time axis")
        return _resized(ctx, data, data.time_dim_axis, opts.repeat, "time")

    def __init__(self, ctx: LayerContext, opts: Any):
        super().__init__(ctx)
        self.axis = ctx.input_template().time_dim_axis
        self.repeat, self.value = opts.repeat, getattr(opts, self.value_option)

    def __call__(self, sources: Sequence[Data], *, train: bool, refs: Mapping[str, Data] | None = None) -> Data:
        x = self.input_data(sources)
        fill: Any = self.value
        if isinstance(self.value, str):
            dims = [x.dims[x.batch_dim_axis], self.out.time_dim,
                    *[d for i, d in enumerate(x.dims) if i not in (x.batch_dim_axis, self.axis)]]
            fill = tf.cast(aligned_tensor(refs[self.value], dims), x.tensor.dtype)
        left, right = (self.repeat, 0) if self.at_start else (0, self.repeat)
        positions, new_lens = pad_positions(x.get_dyn_size(x.dims[self.axis]), left, right, "constant")
        return remap_axis(x, self.axis, self.out, positions, new_lens, fill)


@register_layer("prefix_in_time")
class PrefixInTimeLayer(_InTimeLayer):
    """``repeat`` frames of ``prefix`` (a number or a layer without time axis) before every sequence.

    Config: ``{"class": "prefix_in_time", "from": "x", "prefix": 0.0, "repeat": 1}``
    """

    class Opts(LayerOpts):
        prefix: float | str = layer_ref(0.0)
        repeat: int = 1


@register_layer("postfix_in_time")
class PostfixInTimeLayer(_InTimeLayer):
    """``repeat`` frames of ``postfix`` (a number or a layer without time axis) after every sequence's end.

    Config: ``{"class": "postfix_in_time", "from": "x", "postfix": "eos_vec", "repeat": 1}``
    """

    at_start = False
    value_option = "postfix"

    class Opts(LayerOpts):
        postfix: float | str = layer_ref(0.0)
        repeat: int = 1


@register_layer("window")
class WindowLayer(LayerBase):
    """Each frame with its neighbours: a new window axis of ``window_size`` right after ``axis`` (default "T").

    Config: ``{"class": "window", "from": "x", "window_size": 3}``. ``padding`` "same" (zeros around each
    sequence; ``window_left`` / ``window_right``, default centered) or "valid" (only full windows);
    ``stride`` keeps every n-th window. Inside a rec loop ("T" of a frame without time axis) the window holds
    the last ``window_size`` steps (zeros before the first): [B, window, ...]; there ``window_right`` must be
    0 (or ``window_left`` ``window_size - 1``) and the buffer of past frames is the layer's state.
    """

    @classmethod
    def runs_on_sequences(cls, layer_dict: Mapping[str, Any]) -> bool:
        looks_back = layer_dict.get("window_right") == 0 or (
            layer_dict.get("window_left") is not None and layer_dict.get("window_left") == layer_dict.get("window_size", 0) - 1)
        return (looks_back and layer_dict.get("axis", "T") in ("T", "t") and layer_dict.get("padding", "same") == "same"
                and layer_dict.get("stride", 1) == 1)

    example = {"from": "data", "window_size": 3}

    class Opts(LayerOpts):
        window_size: int
        window_left: int | None = None
        window_right: int | None = None
        axis: Any = "T"
        padding: str = "same"
        stride: int = 1
        window_dim: Dim | None = None

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        data = ctx.input_template()
        _needs_batch(ctx, data)
        left = cls._left(ctx, opts)
        window = opts.window_dim or Dim(opts.window_size, f"{ctx.name}:window", kind=SPATIAL)
        if window.size != opts.window_size:
            raise ctx.error(f'"window_dim" {window.describe()} does not match "window_size" {opts.window_size}')
        ctx.state["window_left"] = left
        if cls._in_loop(ctx, data, opts):
            cls._check_loop(ctx, data, opts)
            data = data.copy_as_batch_major()
            return data.with_dims([data.dims[0], window, *data.dims[1:]])
        axis = non_batch_axis_of(ctx, data, opts.axis, "axis")
        old = data.dims[axis]
        if opts.stride == 1 and opts.padding == "same":
            new = old
        else:
            size = None if old.is_dynamic else cls._out_len(old.size, opts)
            new = Dim(size, f"{ctx.name}:window-axis", kind=old.kind)
        data = replace_dim(data, axis, new)
        return data.with_dims([*data.dims[:axis + 1], window, *data.dims[axis + 1:]])

    @staticmethod
    def _in_loop(ctx: LayerContext, data: Data, opts: Opts) -> bool:
        """Whether the window runs over the steps of the enclosing rec loop ("T" of a frame without time axis)."""
        axis = opts.axis
        return ctx.inside_loop and data.time_dim is None and isinstance(axis, str) and axis.lower() in ("t", "time")

    @staticmethod
    def _check_loop(ctx: LayerContext, data: Data, opts: Opts) -> None:
        """Inside a loop only past steps are known: same padding, stride 1, the window ends at this step."""
        if opts.padding != "same" or opts.stride != 1:
            raise ctx.error(f'inside a rec loop: expected "padding" "same" and "stride" 1, got {opts.padding!r} and '
                            f"{opts.stride}")
        if opts.window_right != 0 and opts.window_left != opts.window_size - 1:
            raise ctx.error(f'inside a rec loop the window can only look back: set "window_right": 0 (or '
                            f'"window_left": {opts.window_size - 1}), got "window_left" {opts.window_left}, '
                            f'"window_right" {opts.window_right}')
        if any(dim.size is None for dim in data.dims if not dim.is_batch):
            raise ctx.error(f"inside a rec loop the buffer of past frames needs static dims, got {data.describe()}")

    @staticmethod
    def _left(ctx: LayerContext, opts: Opts) -> int:
        """Frames of left context ("same" padding)."""
        size = opts.window_size
        if not isinstance(size, int) or size < 1 or opts.stride < 1:
            raise ctx.error(f'"window_size" / "stride": expected positive ints, got {size!r} / {opts.stride!r}')
        if opts.padding not in ("same", "valid"):
            raise ctx.error(f'"padding": expected "same" or "valid", got {opts.padding!r}')
        if opts.padding == "valid":
            return 0
        if opts.window_left is not None:
            left = opts.window_left
        elif opts.window_right is not None:
            left = size - 1 - opts.window_right
        else:
            left = size - 1 - size // 2
        right = opts.window_right if opts.window_right is not None else size - 1 - left
        if left < 0 or right < 0 or left + right + 1 != size:
            raise ctx.error(f'"window_left" {opts.window_left} + "window_right" {opts.window_right} + 1 must be '
                            f'"window_size" {size}')
        return left

    @staticmethod
    def _out_len(length: Any, opts: Opts) -> Any:
        """Number of windows for ``length`` frames (an int or a [B] tensor)."""
        if opts.padding == "valid":
            length = length - opts.window_size + 1
            length = max(length, 0) if isinstance(length, int) else tf.maximum(length, 0)
        return ceildiv(length, opts.stride)

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        data = ctx.input_template()
        self.in_loop = self._in_loop(ctx, data, opts)
        self.axis = None if self.in_loop else data.get_axis(opts.axis)
        self.left, self.opts = ctx.state["window_left"], opts

    def __call__(self, sources: Sequence[Data], *, train: bool) -> Data:
        if self.in_loop:
            raise self.ctx.error("inside a rec loop this layer runs through step (it carries the past frames)")
        x = self.input_data(sources)
        lens = x.get_dyn_size(x.dims[self.axis])
        new_lens = self._out_len(lens, self.opts)
        steps = tf.range(tf.reduce_max(new_lens) if self.out.dims[self.axis].is_dynamic
                         else self.out.dims[self.axis].size)
        positions = (steps[:, None] * self.opts.stride + tf.range(self.opts.window_size)[None, :] - self.left)
        positions = tf.where(steps[None, :, None] < new_lens[:, None, None], positions[None], -1)
        tensor, rest = batch_axis_layout(x, self.axis)
        y = gather_frames(tensor, lens, positions)
        new, window = self.out.dims[self.axis], self.out.dims[self.axis + 1]
        y = transpose_to(y, [x.dims[x.batch_dim_axis], new, window, *rest], self.out.dims)
        return self.out.with_tensor(y, like=x, dyn_sizes={new: new_lens} if new.is_dynamic else {})

    def initial_state(self, batch_size: Any) -> Any:
        """Inside a rec loop: the last ``window_size`` frames, zeros before the first step ([B, window, ...])."""
        if not self.in_loop:
            return None
        return tf.zeros([batch_size if dim.is_batch else dim.size for dim in self.out.dims], self.out.dtype)

    def step(self, sources: Sequence[Data], state: Any, *, train: bool, i: Any,
             refs: Mapping[str, Data] | None = None) -> tuple[Data, Any]:
        """The buffer shifted by one step, this frame last (also the new state)."""
        x = self.input_data(sources).copy_as_batch_major()
        window = tf.concat([state[:, 1:], tf.cast(x.tensor, state.dtype)[:, None]], axis=1)
        return self.out.with_tensor(window, like=x), window


@register_layer("shift_axis")
class ShiftAxisLayer(LayerBase):
    """Frames moved by ``amount`` along ``axis`` (positive: later), per sequence.

    Config: ``{"class": "shift_axis", "from": "x", "axis": "T", "amount": 1}``. With ``pad`` (default) the
    axis keeps its size and the gap is 0; without, the axis shrinks by ``|amount|`` (frames pushed out of each
    sequence are dropped). ``adjust_size_info`` updates the sequence lengths accordingly.
    """

    example = {"from": "data", "axis": "T", "amount": 1}

    class Opts(LayerOpts):
        axis: Any
        amount: int
        pad: bool = True
        adjust_size_info: bool = True

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        data = ctx.input_template()
        _needs_batch(ctx, data)
        axis = non_batch_axis_of(ctx, data, opts.axis, "axis")
        old = data.dims[axis]
        if opts.pad:
            if old.is_dynamic and opts.adjust_size_info and opts.amount:
                return replace_dim(data, axis, Dim(None, f"{ctx.name}:shifted", kind=old.kind))
            return data
        return _resized(ctx, data, axis, -abs(opts.amount), "shifted")

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.axis = ctx.input_template().get_axis(opts.axis)
        self.opts = opts

    def __call__(self, sources: Sequence[Data], *, train: bool) -> Data:
        x = self.input_data(sources)
        lens = x.get_dyn_size(x.dims[self.axis])
        amount, max_len = self.opts.amount, tf.shape(x.tensor)[self.axis]
        if self.opts.pad:
            t = tf.range(max_len)[None, :]
            positions = tf.broadcast_to(t - amount, [tf.shape(lens)[0], max_len])
            new_lens = tf.clip_by_value(lens + amount, 0, max_len) if self.opts.adjust_size_info else lens
        else:
            new_lens = tf.maximum(lens - abs(amount), 0)
            t = tf.range(tf.maximum(max_len - abs(amount), 0))[None, :]
            positions = tf.where(t < new_lens[:, None], t + max(-amount, 0), -1)
        return remap_axis(x, self.axis, self.out, positions, new_lens)
