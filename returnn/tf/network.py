"""``Network``: a RETURNN ``network`` dict turned into layers, built in dependency order, callable on a batch."""

from __future__ import annotations

import contextlib
import dataclasses
from types import MappingProxyType
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import tensorflow as tf

from returnn.errors import ConfigError, DatasetError, LayerConfigError, LayerConstructionError, ReturnnError
from returnn.log import logger
from returnn.tensor.data import Data
from returnn.tensor.dim import batch_dim, feature_dim
from returnn.tensor.extern_data import ExternData, batch_feed, seq_len_key, size_keys
from returnn.tf import layers as _layers  # noqa: F401  (registers every layer family)
from returnn.tf.layers.base import CommonOpts, LayerBase, LayerContext, get_layer_class
from returnn.tf.layers.opts import did_you_mean
from returnn.tf.losses import Loss, LossEntry, LossValue, get_loss_class, make_loss
from returnn.tf.net_graph import BASE, DATA, INDEX, LAYER, PREV, NetGraph, Ref, parse_from, parse_ref

__all__ = ["LossEntry", "Network", "parse_from"]

_DATA_PREFIX = "data:"
_BASE_PREFIX = "base:"


def _same_shape(a: Data, b: Data) -> bool:
    """Same kinds and sizes of dims, dtype and vocab size (what a ``prev:`` guess must get right)."""
    def sig(data: Data) -> tuple:
        return tuple((d.kind, d.size) for d in data.dims), data.dtype, data.sparse_dim and data.sparse_dim.size
    return sig(a) == sig(b)


def _own_n_out(layer_dict: Any) -> int | None:
    """The ``n_out`` a layer dict gives itself (a positive int), else None."""
    n_out = layer_dict.get("n_out") if isinstance(layer_dict, Mapping) else None
    return n_out if isinstance(n_out, int) and not isinstance(n_out, bool) and n_out > 0 else None


def _names_a_layer(exc: Exception) -> bool:
    """Whether an error message already says where (a layer, or the cycle), so it is not wrapped again."""
    return str(exc).startswith(("layer ", "network has a cycle"))


class _PrevCycle(Exception):
    """``prev:name`` was asked for while ``name`` is being built: the first template pass drops that source."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


@dataclasses.dataclass
class _Pending:
    """A layer whose template exists and whose module is yet to be made."""

    cls: type[LayerBase]
    opts: Any
    ctx: LayerContext
    sources: list[str]


class Network(tf.Module):
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
        self.graph = NetGraph(self.net_dict, where=self.path_of("") or "network", path_of=self.path_of)
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
        self.batch_dim = parent_ctx.batch_dim if parent_ctx is not None else batch_dim
        self._batch_size: Any = None  # the current batch size while the network runs
        self._registered = {layer["register_as_extern_data"]: name for name, layer in self.net_dict.items()
                            if isinstance(layer, Mapping) and layer.get("register_as_extern_data")}
        self.root_names = list(roots) if roots is not None else self._roots()
        self._template_pass()
        if instantiate:
            self.instantiate()

    @classmethod
    def from_config(cls, config: Any) -> Network:
        """From the config keys ``network``, ``extern_data`` (or ``num_inputs`` / ``num_outputs``), ``random_seed``."""
        net_dict = config.typed_value("network")
        if net_dict is None:
            raise ConfigError('config key "network": missing; expected a dict of layer dicts')
        if not isinstance(net_dict, Mapping):
            raise ConfigError(f'config key "network": expected a dict of layer dicts, got {type(net_dict).__name__}')
        options = {"optimize_move_layers_out": config.bool("optimize_move_layers_out", True)}
        net = cls(net_dict, extern_data=ExternData.from_config(config), random_seed=config.int("random_seed", 42),
                  options=options)
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
        elif not self.used_data_keys and self.extern_data:
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
            logger.info(f"{indent}layer {self.path_of(name)!r} ({self._contexts[name].layer_class}): "
                        f"{template.describe()} {template.dtype}")
            for sub in self._pending[name].ctx.state.get("nested_networks", ()) if name in self._pending else ():
                sub.print_templates(indent + "  ")

    # ---- templates ----

    def _roots(self) -> list[str]:
        """Layers to build: ``output``, layers with a loss, layers marked ``is_output_layer``."""
        roots = self.graph.roots()
        if not roots:
            raise LayerConfigError(f"{self.path_of('') or 'network'}: no 'output' layer and no layer with "
                                   f'"loss" or "is_output_layer"; layers: {", ".join(self.net_dict) or "none"}')
        return roots

    def _template_pass(self) -> None:
        """Templates of the roots and all they read; with ``prev:`` cycles, passes until the guesses agree."""
        self._prev_guess: dict[str, Data] = {}
        self._dropped = False
        for _ in range(5):
            for root in self.graph.order(self.root_names):
                self._template(root)
            if not self._dropped and all(_same_shape(self.templates[name], guess)
                                         for name, guess in self._prev_guess.items()):
                return
            self._prev_guess = {name: self.templates[name] for name in self._prev_read()}
            self._dropped = False
            self.templates, self._pending, self._contexts, self._sources = {}, {}, {}, {}
        changed = [name for name, guess in self._prev_guess.items() if not _same_shape(self.templates[name], guess)]
        raise LayerConfigError(f"{self.path_of('')}: the templates of {', '.join(changed)} change with each "
                               f"'prev:' guess; give their \"n_out\" / \"out_type\"")

    def _prev_read(self) -> list[str]:
        """Layers of this network read through ``prev:``."""
        read = [dep for layer in self.templates for dep in self.graph.prev_deps(layer) if dep in self.templates]
        return list(dict.fromkeys(read))

    def path_of(self, name: str) -> str:
        """The full layer path (``sub/out`` inside a subnetwork)."""
        if self.parent_ctx is None:
            return name
        prefix = self.parent_ctx.network.path_of(self.parent_ctx.name)
        return f"{prefix}/{name}" if name else prefix

    def dependency_template(self, ref: str, *, requested_by: str) -> Data:
        """Template of a reference (layer name, ``data:key``, ``base:x``, ``prev:x``), building the layer if needed."""
        if ref in self.outer_refs:
            return self.outer_refs[ref]
        parsed = parse_ref(ref)
        outer = self.outer_template(parsed, requested_by=requested_by)
        if outer is not None:
            if parsed.kind != PREV:  # a prev: template may change from one template pass to the next
                self.outer_refs[ref] = outer
            return outer
        where = f"layer {self.path_of(requested_by)!r}"
        if parsed.kind == DATA:
            return self.data_template(parsed.name, requested_by=requested_by)
        if parsed.kind == BASE:
            if self.parent_ctx is None:
                raise LayerConfigError(f"{where}: {ref!r}: 'base:' outside a subnetwork")
            outer, outer_net = parse_ref(parsed.name), self.parent_ctx.network
            if outer.kind == LAYER and outer.layer not in outer_net.net_dict:
                raise LayerConfigError(f"{where}: {ref!r}: the enclosing network has no layer {outer.layer!r}"
                                       f"{did_you_mean(outer.layer, outer_net.net_dict)}; defined: "
                                       f"{', '.join(outer_net.net_dict)}")
            template = self.parent_ctx.dependency(parsed.name)
            self.outer_refs[ref], self.outer_sources[ref] = template, parsed.name
            return template
        if parsed.kind in (PREV, INDEX):
            raise LayerConfigError(f"{where}: {ref!r}: {'prev:' if parsed.kind == PREV else repr(':i')} is only "
                                   f'valid inside the "unit" dict of a rec layer')
        if parsed.name not in self.net_dict and parsed.layer in self.net_dict:
            return self._sub_layer_template(parsed.name, requested_by=requested_by)
        self._check_layer_exists(parsed.name, requested_by=requested_by)
        return self._template(parsed.name)

    def _check_layer_exists(self, name: str, *, requested_by: str, prefix: str = "") -> None:
        if name not in self.net_dict:
            raise LayerConfigError(f"layer {self.path_of(requested_by)!r}: no layer {prefix + name!r}"
                                   f"{did_you_mean(name, self.net_dict)}; defined: {', '.join(self.net_dict)}")

    def outer_template(self, ref: Ref, *, requested_by: str) -> Data | None:
        """Template of a ref this network does not compute itself but gets with the batch (its ``scope`` says);
        None: not such a ref."""
        return None if self.scope is None else self.scope.template(self, ref, requested_by=requested_by)

    def prev_template(self, name: str, *, requested_by: str) -> Data:
        """``prev:name`` of a layer of this network: its template (a guess while it depends on the asking layer)."""
        self._check_layer_exists(name, requested_by=requested_by, prefix="prev:")
        if name in self.templates:
            return self.templates[name]
        if name in self._prev_guess:
            return self._prev_guess[name]
        if name in self._stack:
            raise _PrevCycle(name)
        self._stack.append(None)
        try:
            return self._template(name)
        finally:
            self._stack.pop()

    def data_template(self, key: str, *, requested_by: str) -> Data:
        """``data:key``: an extern data key (or one a layer registers with ``register_as_extern_data``)."""
        if key in self.extern_data:
            if key not in self.used_data_keys:
                self.used_data_keys.append(key)
            return self.extern_data[key]
        if key in self._registered:
            return self.dependency_template(self._registered[key], requested_by=requested_by)
        if self.parent_ctx is not None:
            ref = f"{_DATA_PREFIX}{key}"
            template = self.parent_ctx.dependency(ref)
            self.outer_refs[ref], self.outer_sources[ref] = template, ref
            return template
        raise LayerConfigError(f"layer {self.path_of(requested_by)!r}: 'data:{key}': no extern data key {key!r}; "
                               f"extern_data has: {', '.join(self.extern_data)}")

    def _sub_layer_template(self, ref: str, *, requested_by: str) -> Data:
        """Template of ``"layer/sub"``, a sublayer (e.g. a part of "split") of a layer of this network."""
        base, sub = ref.split("/", 1)
        self._template(base)
        pending = self._pending[base]
        template = pending.cls.sub_template(pending.ctx, sub)
        if template is None:
            has_subs = pending.cls.sub_template.__func__ is not LayerBase.sub_template.__func__
            what = f"no sublayer {sub!r}" if has_subs else "no sublayers"
            raise LayerConfigError(f"layer {self.path_of(requested_by)!r}: {ref!r}: layer {base!r} has {what}")
        self._sub_refs[ref] = (base, sub)
        return template

    def _template(self, name: str) -> Data:
        """Template of layer ``name`` after those of everything it reads; cycles are an error showing the loop."""
        if name in self.templates:
            return self.templates[name]
        path = self.path_of(name)
        if name in self._stack:
            if None in self._stack[self._stack.index(name):]:
                raise _PrevCycle(name)  # reached through prev: of a layer being built
            cycle = self._path_stack[self._path_stack.index(path):] + [path]
            raise LayerConfigError(f"network has a cycle: {' -> '.join(cycle)}")
        if path in self._path_stack:
            cycle = self._path_stack[self._path_stack.index(path):] + [path]
            raise LayerConfigError(f"network has a cycle: {' -> '.join(cycle)}")
        layer_dict = self.net_dict[name]
        self._stack.append(name)
        self._path_stack.append(path)
        try:
            with self._errors_named(name, "construction"):
                self._layer_template(name, layer_dict)
        finally:
            self._stack.pop()
            self._path_stack.pop()
        return self.templates[name]

    @contextlib.contextmanager
    def _errors_named(self, name: str, what: str) -> Iterator[None]:
        """Errors of building or running layer ``name`` say so: ours get its path and class in front (unless they
        name a layer already), others become a LayerConstructionError saying ``what`` failed."""
        try:
            yield
        except _PrevCycle:
            raise
        except ReturnnError as exc:
            if _names_a_layer(exc):
                raise
            raise self._prefixed(name, self.net_dict[name], exc) from exc
        except Exception as exc:
            cls = self.net_dict[name].get("class") if isinstance(self.net_dict[name], Mapping) else None
            where = f"layer {self.path_of(name)!r}" + (f' (class "{cls}")' if cls else "")
            raise LayerConstructionError(f"{where}: {what} failed: {type(exc).__name__}: {exc}") from exc

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
        read = cls.sources_read(layer_dict, [ref for ref, _ in sources])
        sources = [item for item in sources if item[0] in read]
        if any(axis is not None for _, axis in sources) and not cls.accepts_source_axes:
            raise LayerConfigError(f'{where}: "from": (name, axis) pairs are only for "concat", got {sources!r}')
        return cls, own, common, sources

    def _source_templates(self, name: str, sources: Sequence[str]) -> list[str]:
        """The sources whose templates exist. A ``prev:x`` whose x is being built (a first pass) is guessed as
        [B, n_out] where x gives ``n_out``, else dropped; later passes check the guesses."""
        kept = []
        for ref in sources:
            self._stack.append(None)
            try:
                self.dependency_template(ref, requested_by=name)
                kept.append(ref)
            except _PrevCycle:
                if not ref.startswith("prev:"):
                    raise
                self._dropped = True
                target = parse_ref(ref).name
                if target in self.net_dict and _own_n_out(self.net_dict[target]) is not None:
                    self._prev_guess[target] = self._prev_placeholder(target)
                    kept.append(ref)
            finally:
                self._stack.pop()
        return kept

    def _prev_placeholder(self, name: str) -> Data:
        """A first guess of ``prev:name`` while its template needs the asking layer's: [B, n_out (else 1)]."""
        size = _own_n_out(self.net_dict[name]) or 1
        return Data(f"prev:{name}", (self.batch_dim, feature_dim(size, f"prev:{name}:guess")))

    def _layer_template(self, name: str, layer_dict: Any) -> None:
        """The template of one layer from its sources' and refs' templates; no variables yet."""
        cls, own, common_dict, from_items = self._split_opts(name, layer_dict)
        where = f'layer {self.path_of(name)!r} (class "{layer_dict["class"]}")'
        common = CommonOpts.from_dict(common_dict, where=where)
        sources = [ref for ref, _ in from_items]
        dropped: list[str] = []
        if any(ref.startswith("prev:") for ref in sources):
            kept = self._source_templates(name, sources)
            dropped = [ref for ref in sources if ref not in kept]
            if dropped and not kept and any(key in layer_dict for key in ("n_out", "out_dim", "out_type")):
                # nothing left to read, but the layer says its dims: guess those frames, the next pass corrects them
                for ref in dropped:
                    self._prev_guess[parse_ref(ref).name] = self._prev_placeholder(parse_ref(ref).name)
                kept, dropped = sources, []
            from_items = [item for item in from_items if item[0] in kept]
            sources = kept
        try:
            self._layer_template_from(name, layer_dict, cls, own, common, from_items, sources)
        except LayerConfigError as exc:
            if not dropped:
                raise
            raise LayerConfigError(f"{where}: its template depends on {', '.join(map(repr, dropped))}, whose own "
                                   f"template needs this layer's; give the dims explicitly (\"n_out\", \"out_type\") "
                                   f"or another source ({exc})") from exc

    def _layer_template_from(self, name: str, layer_dict: Any, cls: type[LayerBase], own: dict, common: CommonOpts,
                             from_items: list[tuple[str, Any]], sources: list[str]) -> None:
        where = f'layer {self.path_of(name)!r} (class "{layer_dict["class"]}")'
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
            ctx.target = self.target_template(common.target, requested_by=name)
        out = cls.out_template(ctx, opts).copy_template(name)
        self._check_common_dims(ctx, own, out)
        ctx.out = out
        self._pending[name] = _Pending(cls, opts, ctx, sources)
        self.templates[name] = out

    def _check_common_dims(self, ctx: LayerContext, own: Mapping[str, Any], out: Data) -> None:
        """``n_out`` / ``out_dim`` given to a layer that does not declare them must match its output."""
        common = ctx.common
        if common.n_out is not None and "n_out" not in own and out.dim != common.n_out:
            raise ctx.error(f'"n_out" {common.n_out} does not match the output dim {out.dim} ({out.describe()})')
        if common.out_dim is not None and "out_dim" not in own:
            own_dim = out.sparse_dim or out.feature_dim
            if own_dim is None or not own_dim.matches(common.out_dim):
                raise ctx.error(f'"out_dim" {common.out_dim.describe()} does not match the output {out.describe()}')

    def target_template(self, target: str | None, *, requested_by: str | None = None) -> Data:
        """Template of a loss target: an extern data key (default ``classes``) or ``layer:name``."""
        target = target or "classes"
        requested_by = requested_by or (self._stack[-1] if self._stack else "")
        if target.startswith("layer:"):
            return self.dependency_template(target[len("layer:"):], requested_by=requested_by)
        if target in self._registered:
            return self.dependency_template(self._registered[target], requested_by=requested_by)
        if self.scope is not None:
            return self.scope.target_template(self, target)
        if target not in self.extern_data and self.parent_ctx is not None:
            return self.parent_ctx.network.target_template(target, requested_by=requested_by)
        if target not in self.extern_data:
            raise LayerConfigError(f'"target": no extern data key {target!r}; extern_data has: '
                                   f"{', '.join(self.extern_data)}")
        if target not in self.target_keys:
            self.target_keys.append(target)
        return self.extern_data[target]

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
            if ctx.common.loss and not self.inside_loop:  # the rec layer computes those on stacked outputs
                self.losses[name] = make_loss(ctx.common.loss, ctx.common.loss_opts or {}, output=ctx.out,
                                              target=ctx.target, target_name=ctx.common.target or "classes",
                                              where=where)

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
        values: dict[str, Data] = {f"{_DATA_PREFIX}{key}": data for key, data in extern.items()}
        values["data"] = extern.get("data")
        values.update((key, value) for key, value in batch.items() if isinstance(value, Data))
        missing = [ref for ref in self.outer_refs if ref not in values]
        if missing:
            raise LayerConstructionError(f"{self.path_of('') or 'network'}: the batch lacks {', '.join(missing)}")
        registered = {layer: key for key, layer in self._registered.items()}
        subs_out: list[str] = []
        self._batch_size = self._find_batch_size(values)
        try:
            for name, layer in self.layers.items():
                values[name], subs = self._call_layer(name, layer, values, train=train)
                for sub, data in subs.items():
                    values[f"{name}/{sub}"] = data
                    subs_out.append(f"{name}/{sub}")
                if name in registered:
                    values[f"{_DATA_PREFIX}{registered[name]}"] = values[name]
                if self.scope is not None:
                    values.update(self.scope.after_layer(name, values))
        finally:
            self._batch_size = None
        return {name: values[name] for name in list(self.layers) + subs_out}

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
        new_states = {}
        for name, layer in self.layers.items():
            if name in states:
                out, subs, new_states[name] = self.call_layer_step(name, layer, values, states[name], i=i, train=train)
            else:
                out, subs = self._call_layer(name, layer, values, train=train)
            values[name] = out
            values.update((f"{name}/{sub}", data) for sub, data in subs.items())
        return values, new_states

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

    def total_loss(self, loss_values: Mapping[str, LossValue]) -> Any:
        """Sum of ``loss_scale`` times each loss, plus the ``L2`` terms of the layers."""
        entries = self.loss_entries()
        terms = [entries[key].scale * value.loss for key, value in loss_values.items()]
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
