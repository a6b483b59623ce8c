"""The template pass of a ``Network``: each layer's output template from the templates of what it reads, in
dependency order, with no variable made (``instantiate`` makes them after). ``prev:`` cycles of a rec loop are
resolved by guessing the templates read through ``prev:`` and passing again until the guesses hold.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Iterator, Mapping, Sequence

from returnn.errors import LayerConfigError, LayerConstructionError, ReturnnError
from returnn.tensor.data import Data
from returnn.tensor.dim import feature_dim
from returnn.tf.layers.base import CommonOpts, LayerBase, LayerContext, get_layer_class
from returnn.tf.layers.opts import did_you_mean
from returnn.tf.losses import get_loss_class
from returnn.tf.net_graph import BASE, DATA, INDEX, LAYER, PREV, Ref, parse_from, parse_ref


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


DATA_PREFIX = "data:"


class TemplatePass:
    """The construction half of ``Network`` (see the module docstring); it fills ``templates`` and ``_pending``."""

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
            template = self._into_scope(self.parent_ctx.dependency(parsed.name))
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

    def _into_scope(self, outer: Data) -> Data:
        """The template of a value from the enclosing network as this one sees it (in a beam: its batch tiled)."""
        into = getattr(self.scope, "into_scope", None)
        return outer if into is None else into(outer)

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
            ref = f"{DATA_PREFIX}{key}"
            template = self._into_scope(self.parent_ctx.dependency(ref))
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
        if any(dep not in self.templates for dep in self.graph.same_step_deps(name) if dep in self.net_dict):
            for dep in self.graph.unbuilt_deps(name, self.templates):  # deepest first: no recursion per layer
                self._template(dep)
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
        read = cls.sources_read(layer_dict, [ref for ref, _ in sources], search=self.graph.search)
        axes = dict(sources)
        sources = [(ref, axes.get(ref)) for ref in read]  # a layer may read fewer, or sublayers of its "from"
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
            self._layer_template_from(name, where, layer_dict, cls, own, common, from_items, sources)
        except LayerConfigError as exc:
            if not dropped:
                raise
            raise LayerConfigError(f"{where}: its template depends on {', '.join(map(repr, dropped))}, whose own "
                                   f"template needs this layer's; give the dims explicitly (\"n_out\", \"out_type\") "
                                   f"or another source ({exc})") from exc

    def _layer_template_from(self, name: str, where: str, layer_dict: Any, cls: type[LayerBase], own: dict,
                             common: CommonOpts, from_items: list[tuple[str, Any]], sources: list[str]) -> None:
        templates = [self.dependency_template(ref, requested_by=name) for ref in sources]
        ctx = LayerContext(name=name, layer_class=layer_dict["class"], network=self, sources=templates, common=common,
                           source_axes=[axis for _, axis in from_items], source_names=sources)
        if not 0.0 <= common.dropout < 1.0:
            raise ctx.error(f'"dropout": expected a rate in [0, 1), got {common.dropout!r}')
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

