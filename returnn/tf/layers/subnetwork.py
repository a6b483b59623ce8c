"""The ``subnetwork`` layer: a nested network dict, its ``output`` layer the result."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from returnn.tensor.data import Data
from returnn.tf.layers.base import LayerBase, LayerContext, LayerOpts, register_layer


@register_layer("subnetwork")
class SubnetworkLayer(LayerBase):
    """A nested network: ``"data"`` inside is this layer's input, ``"base:x"`` layer ``x`` outside.

    Config: ``{"class": "subnetwork", "from": "enc", "subnetwork": {"a": {...}, "output": {...}}}``
    Losses of inner layers count like any other (named ``<this layer>/<inner layer>``).
    Params: those of the inner layers, named ``<this layer>/<inner layer>/W``.
    """

    example = {"from": "data", "subnetwork": {"hid": {"class": "linear", "n_out": 3, "activation": "relu"},
                                              "output": {"class": "combine", "kind": "add",
                                                         "from": ["hid", "base:other"]}}}
    example_extra = {"other": {"class": "linear", "from": "data", "n_out": 3}}

    class Opts(LayerOpts):
        subnetwork: dict

    @classmethod
    def nested_net_dicts(cls, layer_dict: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        return [layer_dict["subnetwork"]] if isinstance(layer_dict.get("subnetwork"), Mapping) else []

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        if "output" not in opts.subnetwork:
            raise ctx.error(f'"subnetwork": no \'output\' layer; layers: {", ".join(opts.subnetwork) or "none"}')
        extern = {"data": ctx.input_template().copy_template("data")} if ctx.sources else {}
        subnet = ctx.make_subnetwork(opts.subnetwork, extern_data=extern)
        ctx.state["subnetwork"] = subnet
        ctx.state["nested_networks"] = [subnet]
        return subnet.templates["output"]

    @classmethod
    def sub_template(cls, ctx: LayerContext, sub: str) -> Data | None:
        return ctx.state["subnetwork"].templates.get(sub)

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.subnetwork = ctx.state["subnetwork"]
        self.subnetwork.instantiate()
        self.params = {name: var for name, var in self.subnetwork.get_params().items()}

    def nested_loss_entries(self) -> dict[str, Any]:
        return self.subnetwork.loss_entries()

    def call_with_subs(self, sources: Sequence[Data], *, train: bool,
                       refs: Mapping[str, Data] | None = None) -> tuple[Data, dict[str, Data]]:
        outputs = self.subnetwork(self._inner_batch(sources, refs or {}), train=train)
        out = outputs["output"]
        return self.out.with_tensor(out.tensor, like=out).replace(logits=out.logits), dict(outputs)

    def __call__(self, sources: Sequence[Data], *, train: bool, refs: Mapping[str, Data] | None = None) -> Data:
        return self.call_with_subs(sources, train=train, refs=refs)[0]

    def initial_state(self, batch_size: Any) -> Any:
        """Inside a rec loop: the states of the inner layers that have one (None when none has)."""
        if not self.ctx.inside_loop:
            return None
        return self.subnetwork.initial_states(batch_size) or None

    def step_with_subs(self, sources: Sequence[Data], state: Any, *, train: bool, i: Any,
                       refs: Mapping[str, Data] | None = None) -> tuple[Data, dict[str, Data], Any]:
        inputs = self._inner_batch(sources, refs or {})
        values, new_state = self.subnetwork.run_step(inputs, state, i=i, train=train)
        out = values["output"]
        subs = {name: values[name] for name in self.subnetwork.templates}
        return self.out.with_tensor(out.tensor, like=out).replace(logits=out.logits), subs, new_state

    def step(self, sources: Sequence[Data], state: Any, *, train: bool, i: Any,
             refs: Mapping[str, Data] | None = None) -> tuple[Data, Any]:
        out, _, new_state = self.step_with_subs(sources, state, train=train, i=i, refs=refs)
        return out, new_state

    def _inner_batch(self, sources: Sequence[Data], refs: Mapping[str, Data]) -> dict[str, Data]:
        batch: dict[str, Data] = {ref: refs[outer] for ref, outer in self.subnetwork.outer_sources.items()}
        if sources:
            batch["data"] = self.input_data(sources)
        return batch
