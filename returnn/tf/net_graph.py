"""The dependency graph of a net dict: which layers each layer reads, and how (same step, ``prev:``,
``base:``, ``data:``), the roots to build, and an order in which every layer comes after what it reads.

Only ``prev:`` edges may close a cycle (a layer reading its own previous step in a rec loop). The
graph is built from the dicts alone, before any template or variable exists; the network and
pretraining use it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Container, Iterable, Mapping

from returnn.errors import LayerConfigError
from returnn.tf.layers.base import LAYER_CLASSES, get_layer_class, param_path

LAYER, DATA, BASE, PREV, INDEX = "layer", "data", "base", "prev", "index"


@dataclasses.dataclass(frozen=True)
class Ref:
    """A reference as written (``text``): its ``kind`` and the layer name or data key it names."""

    text: str
    kind: str
    name: str

    @property
    def layer(self) -> str:
        """The layer of this network a ``layer`` / ``prev`` ref needs built (``"split"`` for ``"split/0"``)."""
        return self.name.split("/", 1)[0]


def parse_ref(text: str) -> Ref:
    """``"data"``, ``"data:key"``, ``"base:x"``, ``"prev:x"``, ``":i"`` (the loop step) or a layer name."""
    if text == "data":
        return Ref(text, DATA, "data")
    for prefix, kind in (("data:", DATA), ("base:", BASE), ("prev:", PREV)):
        if text.startswith(prefix):
            return Ref(text, kind, text[len(prefix):])
    if text == ":i":
        return Ref(text, INDEX, "i")
    return Ref(text, LAYER, text)


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


def is_root(name: str, layer: Any, *, search: bool = False) -> bool:
    """Whether a layer is built for its own sake: ``output``, a loss, ``is_output_layer``, or a loss inside a
    net dict nested in it (e.g. a softmax with a loss in a rec unit). A search network computes no losses;
    a layer with ``only_on_search`` is built only in one."""
    if isinstance(layer, Mapping) and layer.get("only_on_search") and not search:
        return False
    if name == "output":
        return True
    if not isinstance(layer, Mapping):
        return False
    if layer.get("is_output_layer"):
        return True
    if search:
        return False
    if layer.get("loss"):
        return True
    cls = LAYER_CLASSES.get(layer.get("class"))
    nested = cls.nested_net_dicts(layer) if cls is not None else []
    return any(isinstance(inner, Mapping) and isinstance(sub, Mapping) and sub.get("loss")
               for inner in nested for sub in inner.values())


class NetGraph:
    """The references between the layers of one net dict (``where`` names the network in errors)."""

    def __init__(self, net_dict: Mapping[str, Any], *, where: str = "network", path_of: Any = None,
                 search: bool = False):
        self.net_dict = net_dict
        self.search = search  # built for beam search: no losses, targets only where a layer reads them
        self.where = where
        self._path_of = path_of or (lambda name: name)
        self._refs: dict[str, list[Ref]] = {}
        self._via: dict[tuple[str, str], str] = {}  # (layer, dep) -> the nested layer whose "base:" reads dep

    def refs(self, name: str) -> list[Ref]:
        """Everything layer ``name`` reads (parsed once, when first asked: unused layers are never parsed)."""
        if name not in self._refs:
            self._refs[name] = self._layer_refs(name, self.net_dict[name])
        return self._refs[name]

    # ---- per layer ----

    def _where(self, name: str) -> str:
        layer = self.net_dict[name]
        cls = f' (class "{layer["class"]}")' if isinstance(layer, Mapping) and "class" in layer else ""
        return f"layer {self._path_of(name)!r}{cls}"

    def _layer_refs(self, name: str, layer: Any) -> list[Ref]:
        """Everything ``layer`` reads: "from", layer-valued options, reuse_params, a ``layer:`` target, and the
        ``base:`` refs of nested net dicts (those read this network)."""
        if not isinstance(layer, Mapping) or "class" not in layer:
            raise LayerConfigError(f'layer {self._path_of(name)!r}: expected a dict with "class", got {layer!r}')
        try:
            cls = get_layer_class(layer["class"])
        except LayerConfigError as exc:
            raise LayerConfigError(f"layer {self._path_of(name)!r}: {exc}") from None
        texts = cls.sources_read(layer, [ref for ref, _ in parse_from(layer.get("from", cls.default_from),
                                                                      where=self._where(name))], search=self.search)
        for field in cls.Opts.ref_fields():
            value = layer.get(field)
            texts += [value] if isinstance(value, str) else [v for v in value if isinstance(v, str)] \
                if isinstance(value, (list, tuple)) else []
        texts += cls.extra_refs(layer)
        if isinstance(layer.get("reuse_params"), str):
            texts.append(layer["reuse_params"])
        target = layer.get("target")
        if isinstance(target, str) and (not self.search or cls.reads_target_in_search(layer)):
            # a loss target, or what a choice outputs / a rec loop takes its length from
            texts.append(target[len("layer:"):] if target.startswith("layer:") else f"data:{target}")
        refs = [parse_ref(text) for text in texts]
        for inner in cls.nested_net_dicts(layer):
            for via, text in nested_base_refs(inner):
                ref = parse_ref(text[len("base:"):])
                refs.append(ref)
                self._via[(name, ref.layer)] = via
        return refs

    def sources(self, name: str) -> list[str]:
        """The "from" names of layer ``name`` as written."""
        layer = self.net_dict[name]
        cls = get_layer_class(layer["class"])
        return cls.sources_read(layer, [ref for ref, _ in parse_from(layer.get("from", cls.default_from),
                                                                     where=self._where(name))], search=self.search)

    def same_step_deps(self, name: str) -> list[str]:
        """Layers of this network that ``name`` reads directly (not through ``prev:``)."""
        return _unique(ref.layer for ref in self.refs(name) if ref.kind == LAYER)

    def prev_deps(self, name: str) -> list[str]:
        """Layers of this network that ``name`` reads at the previous loop step."""
        return _unique(ref.layer for ref in self.refs(name) if ref.kind == PREV)

    # ---- whole graph ----

    def check_param_names(self) -> None:
        """Two layers whose names differ only in characters that variable names replace (``"a b"``, ``"a_b"``)
        would store their params under one name, and a checkpoint would keep only one: a LayerConfigError naming
        both. Checked for this net dict and the net dicts nested in its layers (a rec unit as a whole)."""
        _check_param_names(self.net_dict, self._path_of)
        for name, layer in self.net_dict.items():
            cls = LAYER_CLASSES.get(layer.get("class")) if isinstance(layer, Mapping) else None
            for inner in cls.nested_net_dicts(layer) if cls is not None else []:
                _check_param_names(inner, lambda sub, outer=name: f"{self._path_of(outer)}/{sub}")

    def roots(self) -> list[str]:
        """Layers to build: ``output``, layers with a loss, layers marked ``is_output_layer``."""
        return [name for name, layer in self.net_dict.items() if is_root(name, layer, search=self.search)]

    def order(self, roots: Iterable[str]) -> list[str]:
        """``roots`` and what they read (also through ``prev:``), each after its same-step dependencies.

        A cycle of same-step references is an error showing the loop. The walk keeps its own stack, so a
        chain of any length needs no Python recursion.
        """
        done: dict[str, None] = {}
        pending = list(roots)
        while pending:
            self._visit(pending.pop(0), done)
            for name in list(done):
                pending += [dep for dep in self.prev_deps(name)
                            if dep in self.net_dict and dep not in done and dep not in pending]
        if not self.search:
            self._check_only_on_search(done)
        return list(done)

    def _check_only_on_search(self, built: Iterable[str]) -> None:
        """A layer marked ``only_on_search`` that a layer of a network without search reads is an error."""
        for name in built:
            layer = self.net_dict.get(name)
            if not (isinstance(layer, Mapping) and layer.get("only_on_search")):
                continue
            readers = [other for other in built if other != name and name in self.depends_on(other)]
            who = f"read by {', '.join(map(repr, readers))}" if readers else "asked for"
            raise LayerConfigError(f"layer '{self._path_of(name)}': \"only_on_search\": the layer is only built in a "
                                   f"search network, but this one is built without search and the layer is {who}")

    def unbuilt_deps(self, name: str, built: Container[str]) -> list[str]:
        """The layers ``name`` reads at the same step, transitively, that are not in ``built``, each after its
        own deps (``name`` itself not included): building them in this order needs no recursion."""
        done: dict[str, None] = {}
        self._visit(name, done, built)
        return list(done)[:-1]

    def _visit(self, root: str, done: dict[str, None], built: Container[str] = ()) -> None:
        """Depth-first from ``root``: each layer into ``done`` after its same-step dependencies (an explicit
        stack of (layer, its deps not yet walked) pairs instead of recursion); layers in ``built`` are skipped."""
        if root in done:
            return
        stack: list[tuple[str, list[str]]] = [(root, self._local_deps(root))]
        on_stack = {root}
        while stack:
            name, deps = stack[-1]
            while deps and (deps[-1] in done or deps[-1] in built):
                deps.pop()
            if not deps:
                stack.pop()
                on_stack.discard(name)
                done[name] = None
                continue
            dep = deps.pop()
            if dep in on_stack:
                self._raise_cycle([entry for entry, _ in stack], dep)
            stack.append((dep, self._local_deps(dep)))
            on_stack.add(dep)

    def _local_deps(self, name: str) -> list[str]:
        """The same-step deps of ``name`` in this network, reversed (popped from the end: walked as written)."""
        return [dep for dep in reversed(self.same_step_deps(name)) if dep in self.net_dict]

    def _raise_cycle(self, stack: list[str], name: str) -> None:
        loop = stack[stack.index(name):] + [name]
        cycle = []
        for current, nxt in zip(loop, loop[1:] + [None]):
            cycle.append(self._path_of(current))
            if (current, nxt) in self._via:
                cycle.append(f"{self._path_of(current)}/{self._via[current, nxt]}")
        raise LayerConfigError(f"network has a cycle: {' -> '.join(cycle)} (only 'prev:' may close a loop)")

    def depends_on(self, name: str, *, through_prev: bool = True) -> set[str]:
        """Every layer ``name`` reads transitively (same step, and ``prev:`` when ``through_prev``)."""
        seen: set[str] = set()
        pending = [name]
        while pending:
            current = pending.pop()
            deps = self.same_step_deps(current) + (self.prev_deps(current) if through_prev else [])
            for dep in deps:
                if dep in self.net_dict and dep not in seen:
                    seen.add(dep)
                    pending.append(dep)
        return seen

    def depths(self) -> dict[str, int]:
        """Distance of each layer from the extern data (``data``, ``data:*``, ``base:*`` are depth 0)."""
        depths: dict[str, int] = {}
        for name in self.order(self.net_dict):  # each layer after its same-step deps: their depths are known
            deps = [dep for dep in self.same_step_deps(name) if dep in self.net_dict]
            depths[name] = 1 + max((depths[dep] for dep in deps), default=0)
        return depths


def nested_base_refs(net_dict: Any) -> list[tuple[str, str]]:
    """``(inner layer, "base:x")`` for the ``base:`` refs of a nested net dict (``base:base:x`` of a dict nested
    in it too)."""
    if not isinstance(net_dict, Mapping):
        return []
    found: list[tuple[str, str]] = []
    for inner_name, layer in net_dict.items():
        if not isinstance(layer, Mapping) or "class" not in layer:
            continue
        try:
            refs = NetGraph({"x": layer}).refs("x")
        except LayerConfigError:
            continue  # the nested network reports its own errors (unknown class, bad "from") when it is built
        found += [(inner_name, ref.text) for ref in refs if ref.kind == BASE]
    return found


def _check_param_names(net_dict: Mapping[str, Any], path_of: Any) -> None:
    """A LayerConfigError for the first two layer names of ``net_dict`` with the same ``param_path``."""
    seen: dict[str, str] = {}
    for name in net_dict:
        key = param_path(str(name))
        if key in seen:
            raise LayerConfigError(
                f"layers {path_of(seen[key])!r} and {path_of(name)!r}: both names become the variable name "
                f"prefix {param_path(path_of(name))!r} (characters other than letters, digits and _.-/ become _), "
                f"so a checkpoint would keep the params of only one; rename one of them")
        seen[key] = name


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
