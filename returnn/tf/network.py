"""``Network``: a RETURNN ``network`` dict turned into layers, built in dependency order, callable on a batch."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import tensorflow as tf

from returnn.errors import ConfigError, DatasetError, LayerConfigError, LayerConstructionError, ReturnnError
from returnn.tensor.data import Data
from returnn.tensor.dim import batch_dim
from returnn.tensor.extern_data import ExternData, batch_feed, seq_len_key, size_keys
from returnn.tf import layers as _layers  # noqa: F401  (registers every layer family)
from returnn.tf.layers.base import CommonOpts, LayerBase, LayerContext, get_layer_class
from returnn.tf.layers.opts import did_you_mean
from returnn.tf.losses import Loss, LossValue, get_loss_class, make_loss

_DATA_PREFIX = "data:"
_BASE_PREFIX = "base:"


def parse_from(value: Any, *, where: str) -> list[tuple[str, Any]]:
    """``"from"``: a name or list of names (``(name, axis)`` pairs for concat); ``"none"`` or ``[]``: no input."""
    if value is None or value == "none":
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise LayerConfigError(f'{where}: "from": expected a layer name or a list of names, got {value!r}')
    result = []
    for item in items:
        if isinstance(item, str):
            if item != "none":
                result.append((item, None))
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            result.append(item)
        else:
            raise LayerConfigError(f'{where}: "from": expected layer names (or (name, axis) pairs), got {item!r}')
    return result


def _data_key(ref: str) -> str | None:
    """The extern data key of ``"data"`` / ``"data:key"``, else None."""
    if ref == "data":
        return "data"
    return ref[len(_DATA_PREFIX):] if ref.startswith(_DATA_PREFIX) else None


def _names_a_layer(exc: Exception) -> bool:
    """Whether an error message already says where (a layer, or the cycle), so it is not wrapped again."""
    return str(exc).startswith(("layer ", "network has a cycle"))


class Network(tf.Module):
    """Layers built from a net dict; ``net(batch, train=...)`` gives ``{layer name: Data}``.

    Built from the ``output`` layer, layers with a ``loss`` and layers with ``is_output_layer``;
    everything they read is built first. ``parent_ctx`` (the subnetwork layer's context) is set for a
    subnetwork, whose ``"base:x"`` reads layer ``x`` of the enclosing network.
    """

    def __init__(self, net_dict: Mapping[str, Any], *, extern_data: ExternData | Mapping[str, Any],
                 random_seed: int = 42, parent_ctx: LayerContext | None = None, name: str = "network"):
        super().__init__(name=name)
        if not isinstance(net_dict, Mapping):
            raise LayerConfigError(f'"network": expected a dict of layer dicts, got {type(net_dict).__name__}')
        self.net_dict = MappingProxyType(dict(net_dict))  # a proxy, so tf.Module does not wrap the dicts
        self.extern_data = extern_data if isinstance(extern_data, ExternData) else ExternData(extern_data)
        self.random_seed = int(random_seed)
        self.parent_ctx = parent_ctx
        self.layers: dict[str, LayerBase] = {}
        self.templates: dict[str, Data] = {}
        self.losses: dict[str, Loss] = {}
        self._sources: dict[str, list[str]] = {}
        self._contexts: dict[str, LayerContext] = {}
        self._stack: list[str] = []  # layers of this network being built
        self._sub_refs: dict[str, tuple[str, str]] = {}  # "layer/sub" -> (layer, sub), e.g. parts of "split"
        # full paths being built, shared with subnetworks so that a cycle through "base:" shows its whole loop
        self._path_stack: list[str] = parent_ctx.network._path_stack if parent_ctx is not None else []
        self.used_data_keys: list[str] = []  # extern keys that layers read
        self.target_keys: list[str] = []  # extern keys only losses read
        self.batch_dim = parent_ctx.batch_dim if parent_ctx is not None else batch_dim
        self._batch_size: Any = None  # the current batch size while the network runs
        for root in self._roots():
            self._construct(root)

    @classmethod
    def from_config(cls, config: Any) -> Network:
        """From the config keys ``network``, ``extern_data`` (or ``num_inputs`` / ``num_outputs``), ``random_seed``."""
        net_dict = config.typed_value("network")
        if net_dict is None:
            raise ConfigError('config key "network": missing; expected a dict of layer dicts')
        if not isinstance(net_dict, Mapping):
            raise ConfigError(f'config key "network": expected a dict of layer dicts, got {type(net_dict).__name__}')
        return cls(net_dict, extern_data=ExternData.from_config(config), random_seed=config.int("random_seed", 42))

    @property
    def inside_loop(self) -> bool:
        """Whether this network is the body of a rec loop (run once per step)."""
        return False

    def batch_size(self) -> Any:
        """The batch size (scalar int32 tensor) of the current call."""
        if self._batch_size is None:
            if self.parent_ctx is not None:
                return self.parent_ctx.batch_size()
            raise LayerConstructionError("the batch size is only known while the network runs")
        return self._batch_size

    def subnetwork(self, ctx: LayerContext, net_dict: Mapping[str, Any], *, extern_data: Mapping[str, Data],
                   loop: Any = None) -> Network:
        """A nested network of layer ``ctx`` (see ``LayerContext.make_subnetwork``)."""
        return Network(net_dict, extern_data=extern_data, random_seed=self.random_seed, parent_ctx=ctx,
                       name=f"{ctx.name}_subnetwork".replace("/", "_"))

    # ---- construction ----

    def _roots(self) -> list[str]:
        """Layers to build: ``output``, layers with a loss, layers marked ``is_output_layer``."""
        roots = [name for name, layer in self.net_dict.items()
                 if name == "output" or (isinstance(layer, Mapping) and (layer.get("loss") or layer.get("is_output_layer")))]
        if not roots:
            raise LayerConfigError(f"{self.path_of('') or 'network'}: no 'output' layer and no layer with "
                                   f'"loss" or "is_output_layer"; layers: {", ".join(self.net_dict) or "none"}')
        return roots

    def path_of(self, name: str) -> str:
        """The full layer path (``sub/out`` inside a subnetwork)."""
        if self.parent_ctx is None:
            return name
        prefix = self.parent_ctx.network.path_of(self.parent_ctx.name)
        return f"{prefix}/{name}" if name else prefix

    def dependency_template(self, ref: str, *, requested_by: str) -> Data:
        """Template of a reference (layer name, ``data:key``, ``base:x``), building the layer if needed."""
        key = _data_key(ref)
        if key is not None:
            if key not in self.extern_data:
                raise LayerConfigError(f"layer {self.path_of(requested_by)!r}: {ref!r}: no extern data key {key!r}; "
                                       f"extern_data has: {', '.join(self.extern_data)}")
            if key not in self.used_data_keys:
                self.used_data_keys.append(key)
            return self.extern_data[key]
        if ref.startswith(_BASE_PREFIX):
            if self.parent_ctx is None:
                raise LayerConfigError(f"layer {self.path_of(requested_by)!r}: {ref!r}: 'base:' outside a subnetwork")
            return self.parent_ctx.dependency(ref[len(_BASE_PREFIX):])
        if ref not in self.net_dict and ref.split("/", 1)[0] in self.net_dict:
            return self._sub_layer_template(ref, requested_by=requested_by)
        if ref not in self.net_dict:
            defined = ", ".join(self.net_dict)
            raise LayerConfigError(f"layer {self.path_of(requested_by)!r}: no layer {ref!r}"
                                   f"{did_you_mean(ref, self.net_dict)}; defined: {defined}")
        return self._construct(ref)

    def _sub_layer_template(self, ref: str, *, requested_by: str) -> Data:
        """Template of ``"layer/sub"``, a sublayer (e.g. a part of "split") of a layer of this network."""
        base, sub = ref.split("/", 1)
        self._construct(base)
        layer = self.layers[base]
        if not hasattr(layer, "sub_layer_template"):
            raise LayerConfigError(f"layer {self.path_of(requested_by)!r}: {ref!r}: layer {base!r} has no sublayers")
        template = layer.sub_layer_template(sub)
        self._sub_refs[ref] = (base, sub)
        return template

    def _construct(self, name: str) -> Data:
        """Build layer ``name`` after everything it reads; cycles are an error showing the loop."""
        if name in self.templates:
            return self.templates[name]
        path = self.path_of(name)
        if path in self._path_stack:
            cycle = self._path_stack[self._path_stack.index(path):] + [path]
            raise LayerConfigError(f"network has a cycle: {' -> '.join(cycle)}")
        layer_dict = self.net_dict[name]
        self._stack.append(name)
        self._path_stack.append(path)
        try:
            self._build_layer(name, layer_dict)
        except ReturnnError as exc:
            if _names_a_layer(exc):
                raise
            raise self._prefixed(name, layer_dict, exc) from exc
        except Exception as exc:
            where = f"layer {self.path_of(name)!r}"
            raise LayerConstructionError(f"{where}: construction failed: {type(exc).__name__}: {exc}") from exc
        finally:
            self._stack.pop()
            self._path_stack.pop()
        return self.templates[name]

    def _prefixed(self, name: str, layer_dict: Any, exc: ReturnnError) -> ReturnnError:
        """The same error type, its message prefixed with this layer's path and class."""
        cls = layer_dict.get("class") if isinstance(layer_dict, Mapping) else None
        return type(exc)(f'layer {self.path_of(name)!r} (class "{cls}"): {exc}')

    def _split_opts(self, name: str, layer_dict: Any) -> tuple[type[LayerBase], dict, dict, list[tuple[str, Any]]]:
        """Layer class, its own options, the common options and the ``(source, axis)`` pairs of a layer dict."""
        if not isinstance(layer_dict, Mapping) or "class" not in layer_dict:
            raise LayerConfigError(f'layer {self.path_of(name)!r}: expected a dict with "class", got {layer_dict!r}')
        cls = get_layer_class(layer_dict["class"])
        where = f'layer {self.path_of(name)!r} (class "{layer_dict["class"]}")'
        own_names, common_names = set(cls.Opts.field_names()), set(CommonOpts.field_names())
        own, common = {}, {}
        for key, value in layer_dict.items():
            if key in ("class", "from"):
                continue
            if key in own_names:
                own[key] = value
            elif key in common_names:
                common[key] = value
            else:
                raise LayerConfigError(f"{where}: unknown option {key!r}{did_you_mean(key, own_names | common_names)}")
        sources = parse_from(layer_dict.get("from", cls.default_from), where=where)
        if any(axis is not None for _, axis in sources) and not cls.accepts_source_axes:
            raise LayerConfigError(f'{where}: "from": (name, axis) pairs are only for "concat", got {sources!r}')
        return cls, own, common, sources

    def _build_layer(self, name: str, layer_dict: Any) -> None:
        """Templates of sources and refs, the output template, then the layer module and its loss."""
        cls, own, common_dict, from_items = self._split_opts(name, layer_dict)
        where = f'layer {self.path_of(name)!r} (class "{layer_dict["class"]}")'
        common = CommonOpts.from_dict(common_dict, where=where)
        sources = [ref for ref, _ in from_items]
        templates = [self.dependency_template(ref, requested_by=name) for ref in sources]
        ctx = LayerContext(name=name, layer_class=layer_dict["class"], network=self, sources=templates, common=common,
                           source_axes=[axis for _, axis in from_items], source_names=sources)
        opts = cls.Opts.from_dict(own, where=where)
        for field in cls.Opts.ref_fields():
            value = getattr(opts, field)
            for ref in ([value] if isinstance(value, str) else value if isinstance(value, (list, tuple)) else []):
                ctx.dependency(ref)
        if common.reuse_params is not None:
            self.dependency_template(common.reuse_params, requested_by=name)  # built first, but not an input
        loss_cls = get_loss_class(common.loss, where=where) if common.loss else None
        if loss_cls is not None and loss_cls.needs_target:
            ctx.target = self.target_template(common.target)
        out = cls.out_template(ctx, opts).copy_template(name)
        self._check_common_dims(ctx, own, out)
        ctx.out = out
        self._sources[name], self._contexts[name], self.templates[name] = sources, ctx, out
        self.layers[name] = cls(ctx, opts)
        if loss_cls is not None:
            self.losses[name] = make_loss(common.loss, common.loss_opts or {}, output=out, target=ctx.target,
                                          target_name=common.target or "classes", where=where)

    def _check_common_dims(self, ctx: LayerContext, own: Mapping[str, Any], out: Data) -> None:
        """``n_out`` / ``out_dim`` given to a layer that does not declare them must match its output."""
        common = ctx.common
        if common.n_out is not None and "n_out" not in own and out.dim != common.n_out:
            raise ctx.error(f'"n_out" {common.n_out} does not match the output dim {out.dim} ({out.describe()})')
        if common.out_dim is not None and "out_dim" not in own:
            own_dim = out.sparse_dim or out.feature_dim
            if own_dim is None or not own_dim.matches(common.out_dim):
                raise ctx.error(f'"out_dim" {common.out_dim.describe()} does not match the output {out.describe()}')

    def target_template(self, target: str | None) -> Data:
        """Template of a loss target: an extern data key (default ``classes``) or ``layer:name``."""
        target = target or "classes"
        if target.startswith("layer:"):
            return self.dependency_template(target[len("layer:"):], requested_by=self._stack[-1])
        if target not in self.extern_data:
            raise LayerConfigError(f'"target": no extern data key {target!r}; extern_data has: '
                                   f"{', '.join(self.extern_data)}")
        if target not in self.target_keys:
            self.target_keys.append(target)
        return self.extern_data[target]

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
        """Run every layer on ``batch`` (see ``batch_feed``); ``{layer name: Data with tensor}`` in construction order,
        plus the sublayer outputs other layers read (``"layer/sub"``)."""
        batch = batch_feed(batch)
        extern = self.extern_values(batch, self.used_data_keys)
        values: dict[str, Data] = {f"{_DATA_PREFIX}{key}": data for key, data in extern.items()}
        values["data"] = extern.get("data")
        for key, value in batch.items():
            if key.startswith(_BASE_PREFIX):
                values[key] = value
        self._batch_size = self._find_batch_size(values)
        try:
            for name, layer in self.layers.items():
                values[name], subs = self._call_layer(name, layer, values, train=train)
                values.update((f"{name}/{sub}", data) for sub, data in subs.items())
        finally:
            self._batch_size = None
        return {name: values[name] for name in list(self.layers) + list(self._sub_refs)}

    def _find_batch_size(self, values: Mapping[str, Data]) -> Any:
        """The batch size of this call: from the first value with a batch axis, else the enclosing network's."""
        for data in values.values():
            if data is not None and data.batch_dim_axis is not None and data.tensor is not None:
                return tf.shape(data.tensor)[data.batch_dim_axis]
        return self.parent_ctx.batch_size() if self.parent_ctx is not None else None

    def _call_layer(self, name: str, layer: LayerBase, values: Mapping[str, Data], *,
                    train: bool) -> tuple[Data, dict[str, Data]]:
        """One layer: dropout on its sources, the layer, the shared activation; errors name the layer."""
        ctx = self._contexts[name]
        try:
            sources = [self._dropout(values[ref], ctx.common, train=train) for ref in self._sources[name]]
            refs = {ref: values[ref] for ref in ctx.ref_templates}
            with tf.name_scope(layer.name):
                out, subs = layer.call_with_subs(sources, train=train, refs=refs)
            if ctx.common.activation is not None and "activation" not in type(layer).Opts.field_names():
                out = out.replace(tensor=ctx.activation(ctx.common.activation)(out.tensor))
        except ReturnnError as exc:
            if _names_a_layer(exc):
                raise
            raise self._prefixed(name, self.net_dict[name], exc) from exc
        except Exception as exc:
            raise LayerConstructionError(f"{ctx.where()}: call failed: {type(exc).__name__}: {exc}") from exc
        if out.dims != self.templates[name].dims:
            raise LayerConstructionError(f"{ctx.where()}: output {out.describe()} differs from its template "
                                         f"{self.templates[name].describe()}")
        return out, subs

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

    def loss_values(self, outputs: Mapping[str, Data], batch: Any) -> dict[str, LossValue]:
        """Every loss (by layer name) on the outputs of ``net(batch)``, targets read from ``batch``."""
        results = {}
        for name, loss in self.losses.items():
            target = loss.target_name
            if not loss.needs_target:
                target_data = None
            elif target.startswith("layer:"):
                target_data = outputs[target[len("layer:"):]]
            else:
                target_data = self.extern_values(batch, [target])[target]
            results[name] = loss(outputs[name], target_data)
        return results

    def total_loss(self, loss_values: Mapping[str, LossValue]) -> Any:
        """Sum of ``loss_scale`` times each loss, plus the ``L2`` terms of the layers."""
        terms = [self._contexts[name].common.loss_scale * value.loss for name, value in loss_values.items()]
        terms += [term for term in (layer.l2_loss() for layer in self.layers.values()) if term is not None]
        return tf.add_n(terms) if terms else tf.constant(0.0)

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

        return tf.function(forward, input_signature=[self.input_signature()])

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
