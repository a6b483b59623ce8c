"""``LayerBase``, the layer registry and ``LayerContext`` (what a layer sees while it is built)."""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping, Sequence

import tensorflow as tf

from returnn.errors import LayerConfigError
from returnn.tensor.align import concat_features, concat_features_template
from returnn.tensor.data import Data
from returnn.tensor.dim import Dim, feature_dim
from returnn.tf.activations import get_activation
from returnn.tf.initializers import get_initializer, param_seed
from returnn.tf.layers.opts import LayerOpts, did_you_mean, layer_ref

if TYPE_CHECKING:
    from returnn.tf.network import Network

__all__ = ["CommonOpts", "LAYER_CLASSES", "LayerBase", "LayerContext", "LayerOpts", "get_layer_class",
           "layer_ref", "module_name", "param_path", "register_layer"]

LAYER_CLASSES: dict[str, type[LayerBase]] = {}


def register_layer(name: str, *, aliases: Sequence[str] = (), replace: bool = False) -> Callable[[type], type]:
    """Class decorator: make a layer class available as ``"class": name`` (and its aliases)."""

    def decorate(cls: type[LayerBase]) -> type[LayerBase]:
        if not (isinstance(cls, type) and issubclass(cls, LayerBase)):
            raise TypeError(f"register_layer({name!r}): {cls!r} is not a LayerBase subclass")
        if not {"out_template", "__call__"} <= _defined(cls):
            raise TypeError(f"register_layer({name!r}): {cls.__name__} must define out_template and __call__")
        for key in (name, *aliases):
            old = LAYER_CLASSES.get(key)
            if old is not None and not replace and not _same_definition(old, cls):
                raise LayerConfigError(f'layer class "{key}" is already registered ({old.__name__}); '
                                       f"pass replace=True to override it")
            LAYER_CLASSES[key] = cls
        cls.layer_class = name
        return cls

    return decorate


def _same_definition(old: type, new: type) -> bool:
    """The same class, or the same class defined again (a Python config evaluated once more)."""
    return old is new or (old.__module__, old.__qualname__) == (new.__module__, new.__qualname__)


def _defined(cls: type) -> set[str]:
    """Names defined by ``cls`` or its bases below ``LayerBase``."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass is LayerBase:
            break
        names.update(vars(klass))
    return names


def get_layer_class(name: str) -> type[LayerBase]:
    """The class registered as ``name``; unknown names suggest close ones."""
    cls = LAYER_CLASSES.get(name)
    if cls is None:
        raise LayerConfigError(f'"class": unknown layer class {name!r}{did_you_mean(name, LAYER_CLASSES)}')
    return cls


class CommonOpts(LayerOpts):
    """Options every layer accepts; the network handles them (a layer whose ``Opts`` declares one owns it)."""

    n_out: int | None = None
    out_dim: Dim | None = None
    activation: str | None = None
    dropout: float = 0.0
    dropout_noise_shape: dict | None = None
    dropout_on_forward: bool = False
    L2: float | None = None
    trainable: bool = True
    reuse_params: str | None = None
    is_output_layer: bool = False
    loss: str | None = None
    target: str | None = None
    loss_scale: float = 1.0
    loss_opts: dict | None = None
    param_init: str | float | None = None
    register_as_extern_data: str | None = None
    initial_output: Any = None
    only_on_search: bool = False

    DOCS: ClassVar[dict[str, str]] = {
        "n_out": "the output dim; checked against the layer's output when the layer does not set it itself",
        "out_dim": "the output feature (or vocab) Dim, checked like n_out",
        "activation": 'applied to the output ("relu", "tanh", "softmax", ...; arithmetic: "2*sigmoid", "relu+tanh")',
        "dropout": "dropout rate on the layer's input, in training only",
        "dropout_noise_shape": 'axes whose noise is shared, e.g. {"T": 1} (one mask for all frames)',
        "dropout_on_forward": "apply dropout outside training too",
        "L2": "weight of 0.5 * sum of squared params of this layer, added to the total loss",
        "trainable": "False: the params are not updated",
        "reuse_params": "name of a layer whose params (same names and shapes) this layer shares",
        "is_output_layer": "build this layer even when no output or loss reads it",
        "loss": 'ce, mse, l1, ctc, binary_ce, as_is (see "Losses" in the network docs)',
        "target": 'extern data key of the loss target (default "classes"), or "layer:NAME"',
        "loss_scale": "factor of this loss in the total loss",
        "loss_opts": 'options of the loss, e.g. {"label_smoothing": 0.1}, {"use_normalized_loss": False}',
        "param_init": 'initializer of params without their own init option ("glorot_uniform", 0.0, '
                      '"random_normal(stddev=0.1)")',
        "register_as_extern_data": 'make the output readable as "data:KEY" and as a loss "target" KEY',
        "initial_output": 'inside a rec "unit": the value "prev:" reads at step 0: 0 (default), "zeros", "ones", '
                          'a number, "base:LAYER", or "var" (a trained vector)',
        "only_on_search": "build this layer only in a search network (beam search); a network without search "
                          "leaves it out (it is no root there, and reading it is an error)",
    }


@dataclasses.dataclass
class LayerContext:
    """What a layer class sees while it is built: its name, sources' templates, options, the network."""

    name: str
    layer_class: str
    network: Network
    sources: list[Data]
    common: CommonOpts
    source_axes: list[Any] = dataclasses.field(default_factory=list)  # axes of (name, axis) "from" pairs
    source_names: list[str] = dataclasses.field(default_factory=list)  # "from" as written ("prev:s", "base:enc")
    ref_templates: dict[str, Data] = dataclasses.field(default_factory=dict)  # layers read besides "from"
    target: Data | None = None  # template of the loss target, when the layer has a loss with one
    out: Data | None = None
    state: dict[str, Any] = dataclasses.field(default_factory=dict)  # out_template -> __init__ hand-over
    _input: Data | None = None

    def error(self, message: str) -> LayerConfigError:
        """An error that names this layer; ``raise ctx.error("...")``."""
        return LayerConfigError(f'{self.where()}: {message}')

    def where(self) -> str:
        """``layer 'name' (class "linear")`` for messages."""
        return f'layer {self.network.path_of(self.name)!r} (class "{self.layer_class}")'

    def input_template(self) -> Data:
        """The sources concatenated on the feature axis (the single source as is)."""
        if self._input is None:
            if not self.sources:
                raise self.error('needs an input ("from")')
            self._input = concat_features_template(self.sources, name=f"{self.name}:input")
        return self._input

    def dependency(self, name: str) -> Data:
        """Template of another layer (``"base:x"``, ``"data:key"`` too) this layer reads; built first."""
        template = self.network.dependency_template(name, requested_by=self.name)
        self.ref_templates[name] = template
        return template

    # ---- what a layer may ask of its network ----

    @property
    def path(self) -> str:
        """The full layer path (``dec/s`` inside the rec layer ``dec``)."""
        return self.network.path_of(self.name)

    @property
    def inside_loop(self) -> bool:
        """Whether this layer runs once per step of a rec loop (its templates then have no time axis)."""
        return self.network.inside_loop

    @property
    def batch_dim(self) -> Dim:
        """The batch dim of this layer's network (a beam search gives its loop another one)."""
        return self.network.batch_dim

    def batch_size(self) -> Any:
        """The current batch size (a scalar tensor), while the network runs (see ``needs_batch_size``)."""
        return self.network.batch_size()

    def needs_batch_size(self) -> None:
        """Say in ``out_template`` that ``batch_size()`` will be asked without a source to take it from."""
        self.network.require_batch_size()

    def option(self, key: str, default: Any = None) -> Any:
        """A network-wide option from the config (e.g. ``optimize_move_layers_out``)."""
        return self.network.option(key, default)

    @property
    def random_seed(self) -> int:
        """The network's seed, for params and random layers."""
        return self.network.random_seed

    def shared_param(self, name: str, shape: tuple[int, ...]) -> tf.Variable | None:
        """The param ``name`` of the ``reuse_params`` layer (checked to have ``shape``), or None."""
        return self.network.shared_param(self, name, shape)

    def make_subnetwork(self, net_dict: Mapping[str, Any], *, extern_data: Mapping[str, Data],
                        loop: Any = None) -> Any:
        """A nested network of this layer (templates only; ``instantiate()`` makes its params), whose
        ``base:x`` reads this layer's network; ``loop`` (a ``LoopSpec``) makes it a rec loop body."""
        return self.network.subnetwork(self, net_dict, extern_data=extern_data, loop=loop)

    def out_feature_dim(self, n_out: int | None, out_dim: Dim | None) -> Dim:
        """The output feature dim from ``n_out`` / ``out_dim``, else the dim of the loss target or of an explicit
        ``target`` (RETURNN takes it from the target without a loss too, e.g. a softmax in a rec unit)."""
        if out_dim is not None:
            if n_out is not None and out_dim.size != n_out:
                raise self.error(f'"n_out" {n_out} does not match "out_dim" {out_dim.describe()}')
            return out_dim
        if n_out is not None:
            if n_out <= 0:
                raise self.error(f'"n_out": expected a positive int, got {n_out}')
            return feature_dim(n_out, f"{self.name}:feature")
        target = self.target
        if target is None and isinstance(self.common.target, str):
            target = self.network.target_template(self.common.target, requested_by=self.name)
        target_dim = None if target is None else (target.sparse_dim or target.feature_dim)
        if target_dim is None:
            raise self.error('needs "n_out" or "out_dim" (or a "target" to take the dim from)')
        return target_dim

    def activation(self, name: str | None) -> Callable[[Any], Any]:
        """The activation function ``name``; unknown names are an error naming this layer."""
        try:
            return get_activation(name)
        except LayerConfigError as exc:
            raise self.error(str(exc)) from None


_PARAM_NAME = re.compile(r"[^A-Za-z0-9_.\-/]")


def param_path(path: str) -> str:
    """The variable name for a layer or param path: characters other than letters, digits and ``_.-/`` become
    ``_`` (``"enc 1/W"`` -> ``"enc_1/W"``), so layers whose names differ only in those would share names."""
    return _PARAM_NAME.sub("_", path)


def module_name(name: str) -> str:
    """A valid ``tf.Module`` name for a layer name (other characters become ``_``)."""
    name = re.sub(r"\W", "_", name)
    return name if re.match(r"[A-Za-z_]", name) else f"_{name}"


class LayerBase(tf.Module):
    """Base of all layers: one ``tf.Module`` per layer, named after it, holding its params.

    A subclass declares ``Opts`` (a ``LayerOpts``), a classmethod ``out_template(ctx, opts) -> Data``
    computed from templates only, an ``__init__(ctx, opts)`` that makes params with ``add_param``, and
    ``__call__(sources, *, train) -> Data`` (plus ``refs`` when it asked ``ctx.dependency`` for other
    layers). ``example`` is a layer dict (without "class") that tests and docs use, ``example_extra``
    more layers it reads, ``example_extern_data`` other extern data than the default ``data`` (dim 5)
    and ``classes`` (sparse, dim 4); ``default_from`` is "from" when the config omits it.
    """

    layer_class: ClassVar[str] = ""
    Opts: ClassVar[type[LayerOpts]] = LayerOpts
    example: ClassVar[Mapping[str, Any] | None] = None
    example_extra: ClassVar[Mapping[str, Any]] = {}
    example_extern_data: ClassVar[Mapping[str, Any] | None] = None
    default_from: ClassVar[Any] = "data"
    accepts_source_axes: ClassVar[bool] = False
    frame_wise: ClassVar[bool] = False  # each frame's output depends on that frame alone (or, for a recurrent
    # cell, on the frames so far): the rec loop optimizer may run it on whole sequences

    @classmethod
    def sources_read(cls, layer_dict: Mapping[str, Any], sources: Sequence[str], *,
                     search: bool = False) -> list[str]:
        """The "from" entries this layer reads with these options (a choice in training reads only its target);
        ``search``: the network is built for beam search."""
        return list(sources)

    @classmethod
    def extra_refs(cls, layer_dict: Mapping[str, Any]) -> list[str]:
        """Layers read through options that are not plain layer refs (e.g. a rec layer's ``initial_state``,
        which may also be "zeros"); the network builds them first and passes their outputs in ``refs``."""
        return []

    @classmethod
    def searches(cls, layer_dict: Mapping[str, Any], *, search: bool) -> bool:
        """Whether this layer (a choice) keeps a beam of hypotheses in a network built with ``search``."""
        return False

    @classmethod
    def reads_target_in_search(cls, layer_dict: Mapping[str, Any]) -> bool:
        """Whether this layer reads its ``"target"`` in a search network (where losses are not computed and a
        target is only a template, e.g. for the output dim)."""
        return False

    @classmethod
    def runs_on_sequences(cls, layer_dict: Mapping[str, Any]) -> bool:
        """Whether this layer (with these options) inside a rec loop gives, run once on whole sequences, the frames
        it gives step by step: ``frame_wise`` layers, causal ones; the loop optimizer then moves it out."""
        return cls.frame_wise and not cls.nested_net_dicts(layer_dict)

    @classmethod
    def nested_net_dicts(cls, layer_dict: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        """Net dicts nested in this layer's config (their ``base:`` refs read this layer's network)."""
        return []

    def __init__(self, ctx: LayerContext, opts: LayerOpts | None = None):
        super().__init__(name=module_name(ctx.name))
        self.ctx = ctx
        self.layer_name = ctx.name
        self.out: Data = ctx.out
        self.params: dict[str, tf.Variable] = {}

    def input_data(self, sources: Sequence[Data]) -> Data:
        """The sources concatenated on the feature axis, in the layout of ``ctx.input_template()``."""
        if len(sources) == 1:
            return sources[0]
        return concat_features(sources, self.ctx.input_template())

    @classmethod
    def sub_template(cls, ctx: LayerContext, sub: str) -> Data | None:
        """Template of sublayer ``"name/sub"`` from this layer's context after ``out_template`` (None: no such
        sublayer); layers with sublayers override it and ``call_with_subs``."""
        return None

    def call_with_subs(self, sources: Sequence[Data], *, train: bool,
                       refs: Mapping[str, Data] | None = None) -> tuple[Data, dict[str, Data]]:
        """The output and the outputs of sublayers (``"name/sub"``: parts of split, a rec loop's sublayers,
        a unit's last state); layers with sublayers override this and ``sub_layer_template``."""
        return (self(sources, train=train, refs=refs) if refs else self(sources, train=train)), {}

    def nested_loss_entries(self) -> dict[str, Any]:
        """Losses of nested networks (``LossEntry`` by key relative to this layer; output keys are the sublayers
        ``call_with_subs`` gives)."""
        return {}

    # ---- inside a rec loop ----

    def initial_state(self, batch_size: Any) -> Any:
        """What this layer carries from one loop step to the next (a nest of tensors; shapes may grow
        from step to step, e.g. accumulated keys); None for layers without state."""
        return None

    def step(self, sources: Sequence[Data], state: Any, *, train: bool, i: Any,
             refs: Mapping[str, Data] | None = None) -> tuple[Data, Any]:
        """One step of a rec loop on this frame's ``sources``, step index ``i`` (scalar int32):
        ``(output, new state)``. Only called for layers whose ``initial_state`` is not None."""
        raise TypeError(f"{type(self).__name__} has a loop state (initial_state) but does not define step")

    def step_with_subs(self, sources: Sequence[Data], state: Any, *, train: bool, i: Any,
                       refs: Mapping[str, Data] | None = None) -> tuple[Data, dict[str, Data], Any]:
        """``step`` plus the sublayer outputs at this step (see ``call_with_subs``)."""
        out, new_state = self.step(sources, state, train=train, i=i, refs=refs)
        return out, {}, new_state

    def add_param(self, name: str, shape: Sequence[int], *, init: Any = None, dtype: str = "float32",
                  trainable: bool | None = None) -> tf.Variable:
        """A new ``tf.Variable`` named ``<layer path>/<name>`` (or the one shared through ``reuse_params``)."""
        shape = tuple(int(size) for size in shape)
        shared = self.ctx.shared_param(name, shape)
        if shared is not None:
            self.params[name] = shared
            return shared
        full_name = self.param_name(name)
        spec = next((value for value in (init, self.ctx.common.param_init) if value is not None), "glorot_uniform")
        try:
            initializer = get_initializer(spec)
        except LayerConfigError as exc:
            raise self.ctx.error(str(exc)) from None
        value = initializer(shape, tf.as_dtype(dtype), param_seed(self.ctx.random_seed, full_name))
        trainable = self.ctx.common.trainable if trainable is None else trainable
        var = tf.Variable(value, name=full_name, trainable=trainable, dtype=dtype)
        self.params[name] = var
        return var

    def param_name(self, name: str) -> str:
        """The variable name of param ``name``: ``<layer path>/<name>`` (``sub/lstm0_fw/W``)."""
        return param_path(f"{self.ctx.path}/{name}")

    def l2_loss(self) -> Any:
        """``L2`` times the sum of half squared params of this layer (None when ``L2`` is unset)."""
        if not self.ctx.common.L2 or not self.params:
            return None
        return self.ctx.common.L2 * tf.add_n([tf.nn.l2_loss(p) for p in self.params.values()])
