"""``Network``: a RETURNN ``network`` dict turned into layers, built in dependency order, callable on a batch."""

from __future__ import annotations

import contextlib
import dataclasses
from types import MappingProxyType
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import tensorflow as tf

from returnn.errors import ConfigError, DatasetError, LayerConfigError, LayerConstructionError
from returnn.log import logger
from returnn.tf.legacy_network import net_dict_from_config
from returnn.tensor.data import Data
from returnn.tensor.dim import batch_dim
from returnn.tensor.extern_data import ExternData, batch_feed, seq_len_key, size_keys
from returnn.tf import layers as _layers  # noqa: F401  (registers every layer family)
from returnn.tf.layers.base import CommonOpts, LayerBase, LayerContext
from returnn.tf.losses import Loss, LossEntry, LossValue, make_loss
from returnn.tf.net_graph import DATA, NetGraph, parse_from, parse_ref
from returnn.tf.net_templates import DATA_PREFIX, TemplatePass, _Pending

__all__ = ["LossEntry", "Network", "TFNetwork", "parse_from"]


class Network(TemplatePass, tf.Module):
    """Layers built from a net dict; ``net(batch, train=...)`` gives ``{layer name: Data}``.

    Built from ``roots`` (default: the ``output`` layer, layers with a ``loss`` and with ``is_output_layer``)
    and everything they read, in two passes: templates first (no variables; ``templates``), then the
    layer modules (``instantiate``, unless ``instantiate=False``). ``parent_ctx`` (the context of the layer
    that owns this network) is set for a nested network, whose ``"base:x"`` reads layer ``x`` outside.
    Subclasses (the rec loop) resolve more refs (``prev:``, ``:i``, frames) in ``outer_template``.
    """

    def __init__(self, net_dict: Mapping[str, Any], *, extern_data: ExternData | Mapping[str, Any],
                 random_seed: int = 42, parent_ctx: LayerContext | None = None, name: str = "network",
                 roots: Sequence[str] | None = None, instantiate: bool = True, scope: Any = None,
                 options: Mapping[str, Any] | None = None):
        super().__init__(name=name)
        if not isinstance(net_dict, Mapping):
            raise LayerConfigError(f'"network": expected a dict of layer dicts, got {type(net_dict).__name__}')
        self.net_dict = MappingProxyType(dict(net_dict))  # a proxy, so tf.Module does not wrap the dicts
        self.extern_data = extern_data if isinstance(extern_data, ExternData) else ExternData(extern_data)
        self.random_seed = int(random_seed)
        self.parent_ctx = parent_ctx
        self.scope = scope  # resolves refs from outside (a rec loop's frames, prev:, :i); see outer_template
        self.options = dict(options or {})  # network-wide config options (optimize_move_layers_out, ...)
        self.graph = NetGraph(self.net_dict, where=self.path_of("") or "network", path_of=self.path_of,
                              search=bool(self.option("search", False)))
        self.graph.check_param_names()
        self.layers: dict[str, LayerBase] = {}
        self.templates: dict[str, Data] = {}
        self.losses: dict[str, Loss] = {}
        self._pending: dict[str, _Pending] = {}
        self._contexts: dict[str, LayerContext] = {}
        self._sources: dict[str, list[str]] = {}
        self._stack: list[str] = []  # layers of this network being built; None marks a prev: boundary
        self._sub_refs: dict[str, tuple[str, str]] = {}  # "layer/sub" -> (layer, sub), e.g. parts of "split"
        # full paths being built, shared with subnetworks so that a cycle through "base:" shows its whole loop
        self._path_stack: list[str] = parent_ctx.network._path_stack if parent_ctx is not None else []
        self.used_data_keys: list[str] = []  # extern keys that layers read
        self.target_keys: list[str] = []  # extern keys only losses read
        self.outer_refs: dict[str, Data] = {}  # refs given with the batch (base:, and a loop's frames and prev:)
        self.outer_sources: dict[str, str] = {}  # outer ref -> what the owning layer reads for it ("base:x" -> "x")
        self.batch_dim = (getattr(scope, "batch_dim", None) or parent_ctx.batch_dim) if parent_ctx is not None \
            else batch_dim  # a searching rec loop has its own: each sequence beam-size times
        self._batch_size: Any = None  # the current batch size while the network runs
        self._needs_batch_size = False  # a layer asks the batch size without a source to take it from
        self._registered = {layer["register_as_extern_data"]: name for name, layer in self.net_dict.items()
                            if isinstance(layer, Mapping) and layer.get("register_as_extern_data")}
        self.root_names = list(roots) if roots is not None else self._roots()
        self._template_pass()
        if self.graph.search:
            self._keep_only_run_layers()
        if instantiate:
            self.instantiate()

    @classmethod
    def from_config(cls, config: Any, *, search: bool = False, roots: Sequence[str] | None = None,
                    also_build: Sequence[str] = ()) -> Network:
        """From the config keys ``network``, ``extern_data`` (or ``num_inputs`` / ``num_outputs``), ``random_seed``;
        ``search``: built for beam search (choice layers search, no losses; see ``_keep_only_run_layers``);
        ``also_build``: layers built besides the roots (the layer a task outputs; unknown names are left out)."""
        net_dict = net_dict_from_config(config)
        if not isinstance(net_dict, Mapping):
            raise ConfigError(f'config key "network": expected a dict of layer dicts, got {type(net_dict).__name__}')
        options = {"optimize_move_layers_out": config.bool("optimize_move_layers_out", True), "search": search}
        extra = [name for name in also_build if name in net_dict]
        if extra and roots is None:
            roots = NetGraph(net_dict, search=search).roots()
        net = cls(net_dict, extern_data=ExternData.from_config(config), random_seed=config.int("random_seed", 42),
                  options=options, roots=None if roots is None else list(dict.fromkeys([*roots, *extra])))
        if config.bool("debug_print_layer_output_template", False):
            net.print_templates()
        return net

    @property
    def inside_loop(self) -> bool:
        """Whether this network runs once per step of a rec loop (its scope says so, or it is nested in a layer
        that does)."""
        if self.scope is not None:
            return bool(self.scope.inside_loop)
        return self.parent_ctx is not None and self.parent_ctx.inside_loop

    def batch_size(self) -> Any:
        """The batch size (scalar int32 tensor) of the current call."""
        if self._batch_size is None:
            if self.parent_ctx is not None:
                return self.parent_ctx.batch_size()
            raise LayerConstructionError("the batch size is only known while the network runs")
        return self._batch_size

    def option(self, key: str, default: Any = None) -> Any:
        """A network-wide option (from the config), as the root network has it."""
        if self.parent_ctx is not None:
            return self.parent_ctx.network.option(key, default)
        return self.options.get(key, default)

    def require_batch_size(self) -> None:
        """A layer needs ``batch_size()`` without reading data: the root network then reads at least one extern key."""
        if self.parent_ctx is not None:
            self.parent_ctx.network.require_batch_size()
            return
        self._needs_batch_size = True
        if not self.used_data_keys and self.extern_data:
            self.used_data_keys.append("data" if "data" in self.extern_data else next(iter(self.extern_data)))

    def subnetwork(self, ctx: LayerContext, net_dict: Mapping[str, Any], *, extern_data: Mapping[str, Data],
                   loop: Any = None) -> Network:
        """A nested network of layer ``ctx``, templates only (see ``LayerContext.make_subnetwork``)."""
        roots = loop.roots if loop is not None else None
        return Network(net_dict, extern_data=extern_data, random_seed=self.random_seed, parent_ctx=ctx,
                       name=f"{ctx.name}_{'loop' if loop is not None else 'subnetwork'}".replace("/", "_"),
                       instantiate=False, scope=loop, roots=roots)

    def print_templates(self, indent: str = "") -> None:
        """Log every layer's template (``debug_print_layer_output_template``), nested networks too."""
        for name, template in self.templates.items():
            if name not in self._contexts:  # a search network's layer built only for its template
                continue
            logger.info(f"{indent}layer {self.path_of(name)!r} ({self._contexts[name].layer_class}): "
                        f"{template.describe()} {template.dtype}")
            for sub in self._pending[name].ctx.state.get("nested_networks", ()) if name in self._pending else ():
                sub.print_templates(indent + "  ")

    # ---- instantiation ----

    def instantiate(self) -> None:
        """The layer modules (and their params) and losses, in template order."""
        for name, pending in self._pending.items():
            if name in self.layers:
                continue
            ctx, where = pending.ctx, pending.ctx.where()
            with self._errors_named(name, "construction"):
                layer = pending.cls(ctx, pending.opts)
            self._sources[name], self._contexts[name], self.layers[name] = pending.sources, ctx, layer
            if ctx.common.loss and not self.inside_loop and not self.graph.search:  # a rec layer computes those
                # of its sublayers on their stacked outputs; a search computes none
                self.losses[name] = make_loss(ctx.common.loss, ctx.common.loss_opts or {}, output=ctx.out,
                                              target=ctx.target, target_name=ctx.common.target or "classes",
                                              where=where)

    def _keep_only_run_layers(self) -> None:
        """In a search network: forget the layers built only for their templates (a loss target registered by a
        layer gives the dims of a softmax), and the extern keys only those read."""
        run = self.graph.order(self.root_names)
        self._pending = {name: pending for name, pending in self._pending.items() if name in run}
        refs = [parse_ref(ref) for pending in self._pending.values()
                for ref in list(pending.sources) + list(pending.ctx.ref_templates)]
        read = {ref.name for ref in refs if ref.kind == DATA}
        kept = [key for key in self.used_data_keys if key in read]
        if not kept and self.used_data_keys and self._needs_batch_size:
            kept = self.used_data_keys[:1]
        self.used_data_keys[:] = kept

    def shared_param(self, ctx: LayerContext, name: str, shape: tuple[int, ...]) -> tf.Variable | None:
        """The param ``name`` of the layer named by ``ctx``'s ``reuse_params`` (checked to have ``shape``), if any."""
        reuse = ctx.common.reuse_params
        if reuse is None:
            return None
        if reuse not in self.layers:
            raise ctx.error(f'"reuse_params": {reuse!r} is not a layer of this network')
        other = self.layers[reuse]
        if name not in other.params:
            raise ctx.error(f'"reuse_params": layer {reuse!r} has no param {name!r}; it has: {", ".join(other.params)}')
        shared = other.params[name]
        if tuple(shared.shape) != tuple(shape):
            raise ctx.error(f'"reuse_params": param {name!r} has shape {tuple(shared.shape)}, this layer needs {shape}')
        return shared

    # ---- running ----

    def extern_values(self, batch: Any, keys: Sequence[str]) -> dict[str, Data]:
        """``Data`` with tensors for extern keys from a batch: arrays plus ``"<key>:seq_len"`` lengths, or Data."""
        batch = batch_feed(batch)
        values = {}
        for key in keys:
            if key not in batch:
                raise LayerConstructionError(f"batch has no key {key!r}; the network reads {', '.join(keys)}")
            raw = batch[key]
            if isinstance(raw, Data):
                values[key] = raw
                continue
            template = self.extern_data[key]
            tensor = tf.convert_to_tensor(raw)
            if tensor.dtype != tf.as_dtype(template.dtype):
                tensor = tf.cast(tensor, template.dtype)
            sizes = {dim: tf.cast(batch[size_key], tf.int32)
                     for dim, size_key in size_keys(key, template).items() if size_key in batch}
            values[key] = template.with_tensor(tensor, dyn_sizes=sizes)
        return values

    def __call__(self, batch: Any, *, train: bool = False) -> dict[str, Data]:
        """Run every layer on ``batch`` (see ``batch_feed``; ``Data`` entries are taken as they are, e.g. the
        ``base:x`` of a nested network); ``{layer name: Data}`` in construction order, plus the sublayer outputs
        (``"layer/sub"``)."""
        batch = batch_feed(batch)
        extern = self.extern_values(batch, self.used_data_keys)
        values: dict[str, Data] = {f"{DATA_PREFIX}{key}": data for key, data in extern.items()}
        values["data"] = extern.get("data")
        values.update((key, value) for key, value in batch.items() if isinstance(value, Data))
        missing = [ref for ref in self.outer_refs if ref not in values]
        if missing:
            raise LayerConstructionError(f"{self.path_of('') or 'network'}: the batch lacks {', '.join(missing)}")
        self._batch_size = self._find_batch_size(values)
        try:
            subs_out, _ = self._run_layers(values, {}, i=None, train=train)
        finally:
            self._batch_size = None
        return {name: values[name] for name in list(self.layers) + subs_out}

    @contextlib.contextmanager
    def running_with_batch_size(self, batch_size: Any) -> Iterator[None]:
        """While the block runs, ``batch_size()`` is ``batch_size`` (a beam's loop: batch times beam); None: as is."""
        old = self._batch_size
        if batch_size is not None:
            self._batch_size = batch_size
        try:
            yield
        finally:
            self._batch_size = old

    def initial_states(self, batch_size: Any) -> dict[str, Any]:
        """Inside a loop: the state of every layer that has one, at step 0."""
        states = {}
        for name, layer in self.layers.items():
            state = layer.initial_state(batch_size)
            if state is not None:
                states[name] = state
        return states

    def run_step(self, inputs: Mapping[str, Data], states: Mapping[str, Any], *, i: Any,
                 train: bool) -> tuple[dict[str, Data], dict[str, Any]]:
        """Inside a loop: every layer on one step's ``inputs`` (frames, ``prev:`` values, ``base:`` layers);
        layers with a state step through it. Returns all values and the new states."""
        values: dict[str, Data] = dict(inputs)
        _, new_states = self._run_layers(values, states, i=i, train=train)
        return values, new_states

    def _run_layers(self, values: dict[str, Data], states: Mapping[str, Any], *, i: Any,
                    train: bool) -> tuple[list[str], dict[str, Any]]:
        """Every layer in order, its output (and sublayer outputs, a registered ``data:KEY``, what the scope
        derives) put into ``values``; layers with a state step through it. Returns the sublayer keys and the
        new states."""
        registered = {layer: key for key, layer in self._registered.items()}
        sub_keys: list[str] = []
        new_states = {}
        for name, layer in self.layers.items():
            if name in states:
                out, subs, new_states[name] = self.call_layer_step(name, layer, values, states[name], i=i, train=train)
            else:
                out, subs = self._call_layer(name, layer, values, train=train)
            values[name] = out
            for sub, data in subs.items():
                values[f"{name}/{sub}"] = data
                sub_keys.append(f"{name}/{sub}")
            if name in registered:
                values[f"{DATA_PREFIX}{registered[name]}"] = out
            if self.scope is not None:
                values.update(self.scope.after_layer(name, values))
        return sub_keys, new_states

    def _find_batch_size(self, values: Mapping[str, Data]) -> Any:
        """The batch size of this call: from the first value with a batch axis, else the enclosing network's."""
        for data in values.values():
            if data is not None and data.batch_dim_axis is not None and data.tensor is not None:
                return tf.shape(data.tensor)[data.batch_dim_axis]
        return self.parent_ctx.batch_size() if self.parent_ctx is not None else None

    def _call_layer(self, name: str, layer: LayerBase, values: Mapping[str, Data], *,
                    train: bool) -> tuple[Data, dict[str, Data]]:
        """One layer: dropout on its sources, the layer, the shared activation; errors name the layer."""
        out, subs, _ = self._run_layer(name, layer, values, train=train,
                                       call=lambda sources, refs: layer.call_with_subs(sources, train=train, refs=refs))
        return out, subs

    def call_layer_step(self, name: str, layer: LayerBase, values: Mapping[str, Data], state: Any, *, i: Any,
                        train: bool) -> tuple[Data, dict[str, Data], Any]:
        """One loop step of a layer with state: like ``_call_layer``, through ``layer.step``."""
        def call(sources: list[Data], refs: dict[str, Data]) -> tuple[Data, dict[str, Data], Any]:
            return layer.step_with_subs(sources, state, train=train, i=i, refs=refs)
        return self._run_layer(name, layer, values, train=train, call=call)

    def _run_layer(self, name: str, layer: LayerBase, values: Mapping[str, Data], *, train: bool,
                   call: Callable) -> tuple[Data, dict[str, Data], Any]:
        ctx = self._contexts[name]
        with self._errors_named(name, "call"):
            sources = [self._dropout(values[ref], ctx.common, train=train) for ref in self._sources[name]]
            refs = {ref: values[ref] for ref in ctx.ref_templates}
            with tf.name_scope(layer.name):
                out, subs, *state = call(sources, refs)
            if ctx.common.activation is not None and "activation" not in type(layer).Opts.field_names():
                out = out.replace(tensor=ctx.activation(ctx.common.activation)(out.tensor))
        if out.dims != self.templates[name].dims:
            raise LayerConstructionError(f"{ctx.where()}: output {out.describe()} differs from its template "
                                         f"{self.templates[name].describe()}")
        return out, subs, (state[0] if state else None)

    @staticmethod
    def _dropout(data: Data, common: CommonOpts, *, train: bool) -> Data:
        """Dropout on a source (training only unless ``dropout_on_forward``); noise broadcast on axes set to 1."""
        if not common.dropout or not (train or common.dropout_on_forward) or data.sparse:
            return data
        noise_shape = tf.unstack(tf.shape(data.tensor), num=data.batch_ndim)
        for desc, size in (common.dropout_noise_shape or {}).items():
            if size == 1:
                for axis in data.get_axes(desc):
                    noise_shape[axis] = 1
        return data.replace(tensor=tf.nn.dropout(data.tensor, rate=common.dropout, noise_shape=tf.stack(noise_shape)))

    # ---- losses ----

    def loss_entries(self) -> dict[str, LossEntry]:
        """Every loss by its key (the layer path relative to this network: ``output``, ``dec/prob``)."""
        entries = {}
        for name, loss in self.losses.items():
            target = loss.target_name
            entries[name] = LossEntry(loss, self._contexts[name].common.loss_scale, output_key=name,
                                      target_layer_key=target[len("layer:"):] if target.startswith("layer:") else None)
        for name, layer in self.layers.items():
            for key, entry in layer.nested_loss_entries().items():
                target = entry.target_layer_key
                entries[f"{name}/{key}"] = dataclasses.replace(
                    entry, output_key=f"{name}/{entry.output_key}", target_layer_key=target and f"{name}/{target}")
        return entries

    def loss_values(self, outputs: Mapping[str, Data], batch: Any) -> dict[str, LossValue]:
        """Every loss (by key, see ``loss_entries``) on the outputs of ``net(batch)``, targets read from ``batch``."""
        results = {}
        for key, entry in self.loss_entries().items():
            loss = entry.loss
            if not loss.needs_target:
                target_data = None
            elif entry.target_layer_key is not None:
                target_data = outputs[entry.target_layer_key]
            elif loss.target_name in self._registered:
                target_data = outputs[self._registered[loss.target_name]]
            else:
                target_data = self.extern_values(batch, [loss.target_name])[loss.target_name]
            results[key] = loss(outputs[entry.output_key], target_data)
        return results

    def total_loss(self, loss_values: Mapping[str, LossValue], *, global_frames: Mapping[str, Any] | None = None,
                   num_replicas: int = 1) -> Any:
        """Sum of ``loss_scale`` times each loss, plus the ``L2`` terms of the layers.

        In one replica of a distributed step (``global_frames``: each loss's frame count over all replicas), this
        replica's share, such that the shares of all replicas sum to the total loss of the whole batch.
        """
        entries = self.loss_entries()
        terms = []
        for key, value in loss_values.items():
            term = value.to_minimize
            if global_frames is not None and value.per_frame_objective:
                frames, all_frames = tf.cast(value.num_frames, term.dtype), tf.cast(global_frames[key], term.dtype)
                term = term * frames / tf.maximum(all_frames, 1.0)
            terms.append(entries[key].scale * term)
        l2_terms = [term for term in (layer.l2_loss() for layer in self.layers.values()) if term is not None]
        terms += [term / num_replicas for term in l2_terms] if num_replicas > 1 else l2_terms
        return tf.add_n(terms) if terms else tf.constant(0.0)

    def get_layer(self, name: str) -> LayerBase:
        """The built layer ``name`` (RETURNN's ``TFNetwork.get_layer``); its ``out`` is the output template."""
        if name not in self.layers:
            raise LayerConfigError(f"get_layer: no layer {name!r} in {self.path_of('') or 'the network'}; "
                                   f"built layers: {', '.join(self.layers) or 'none'}")
        return self.layers[name]

    # ---- params ----

    def get_params(self) -> dict[str, tf.Variable]:
        """Every variable by its name (``lstm0_fw/W``, ``sub/out/b``), shared ones once."""
        params: dict[str, tf.Variable] = {}
        seen: set[int] = set()
        for var in self.variables:
            if id(var) not in seen:
                seen.add(id(var))
                params[var.name.split(":")[0]] = var
        return params

    def load_params(self, values: Mapping[str, Any], *, ignore_missing: bool = False) -> list[str]:
        """Assign params by name (e.g. from another model); returns the names that were set."""
        params = self.get_params()
        missing = [name for name in params if name not in values]
        if missing and not ignore_missing:
            raise LayerConstructionError(f"load_params: no values for {', '.join(missing)}")
        loaded = []
        for name, var in params.items():
            if name in values:
                value = np.asarray(values[name])
                if tuple(value.shape) != tuple(var.shape):
                    raise LayerConstructionError(f"load_params: {name!r} has shape {tuple(var.shape)}, "
                                                 f"the value {tuple(value.shape)}")
                var.assign(value)
                loaded.append(name)
        return loaded

    # ---- tf.function ----

    def input_signature(self, *, with_targets: bool = False) -> dict[str, tf.TensorSpec]:
        """TensorSpecs (batch and dynamic dims None) of the extern keys the layers read (and the loss
        targets), with their seq lengths."""
        specs = {}
        keys = self.used_data_keys + ([key for key in self.target_keys if key not in self.used_data_keys]
                                      if with_targets else [])
        for key in keys:
            template = self.extern_data[key]
            specs[key] = tf.TensorSpec(template.batch_shape, template.dtype, name=key)
            for size_key in size_keys(key, template).values():
                specs[size_key] = tf.TensorSpec([None], tf.int32, name=size_key.replace(":", "_"))
        return specs

    def forward_function(self, layer_names: Sequence[str] | None = None, *,
                         train: bool = False) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
        """A ``tf.function`` (traced once for all batch shapes): batch -> {layer: tensor, "layer:seq_len": lens}."""
        names = list(layer_names) if layer_names is not None else list(self.layers)

        def forward(batch: Mapping[str, Any]) -> dict[str, Any]:
            outputs = self(batch, train=train)
            result = {}
            for name in names:
                result[name] = outputs[name].tensor
                if outputs[name].seq_lens is not None:
                    result[seq_len_key(name)] = outputs[name].seq_lens
            return result

        return tf.function(forward, input_signature=[self.input_signature()], autograph=False)

    def feed(self, batch: Any, *, with_targets: bool = False) -> dict[str, Any]:
        """The entries of ``batch`` that ``input_signature`` names, in its dtypes (the argument of the steps
        and of ``forward_function``); a missing key is a DatasetError naming the keys the batch has."""
        values = batch_feed(batch)
        feed = {}
        for key, spec in self.input_signature(with_targets=with_targets).items():
            if key not in values:
                raise DatasetError(f"the dataset gives no data key {key!r}, which the network needs; "
                                   f"it has: {', '.join(k for k in values if ':' not in k)}")
            feed[key] = np.asarray(values[key], dtype=spec.dtype.as_numpy_dtype)
        return feed


TFNetwork = Network  # RETURNN's name (returnn.tf.network.TFNetwork)
