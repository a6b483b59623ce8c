"""The ``subnetwork`` layer: a nested network dict, its ``output`` layer the result."""

from __future__ import annotations

from typing import Mapping, Sequence

from returnn.tensor.data import Data
from returnn.tf.layers.base import LayerBase, LayerContext, LayerOpts, register_layer


@register_layer("subnetwork")
class SubnetworkLayer(LayerBase):
    """A nested network: ``"data"`` inside is this layer's input, ``"base:x"`` layer ``x`` outside.

    Config: ``{"class": "subnetwork", "from": "enc", "subnetwork": {"a": {...}, "output": {...}}}``
    Params: those of the inner layers, named ``<this layer>/<inner layer>/W``.
    """

    example = {"from": "data", "subnetwork": {"hid": {"class": "linear", "n_out": 3, "activation": "relu"},
                                              "output": {"class": "combine", "kind": "add",
                                                         "from": ["hid", "base:other"]}}}
    example_extra = {"other": {"class": "linear", "from": "data", "n_out": 3}}

    class Opts(LayerOpts):
        subnetwork: dict

    @classmethod
    def out_template(cls, ctx: LayerContext, opts: Opts) -> Data:
        extern = {"data": ctx.input_template().copy_template("data")} if ctx.sources else {}
        subnet = type(ctx.network)(opts.subnetwork, extern_data=extern, random_seed=ctx.network.random_seed,
                                   parent_ctx=ctx, name=f"{ctx.name}_subnetwork".replace("/", "_"))
        if "output" not in subnet.layers:
            raise ctx.error('"subnetwork": needs an "output" layer')
        if subnet.losses:
            raise ctx.error(f'"subnetwork": losses inside ({", ".join(subnet.losses)}) are not collected; '
                            f'put "loss" on this layer or on a layer outside')
        ctx.state["subnetwork"] = subnet
        return subnet.templates["output"]

    def __init__(self, ctx: LayerContext, opts: Opts):
        super().__init__(ctx)
        self.subnetwork = ctx.state["subnetwork"]
        self.params = {name: var for name, var in self.subnetwork.get_params().items()}

    def __call__(self, sources: Sequence[Data], *, train: bool, refs: Mapping[str, Data] | None = None) -> Data:
        batch: dict[str, Data] = {f"base:{ref}": data for ref, data in (refs or {}).items()}
        if sources:
            batch["data"] = self.input_data(sources)
        outputs = self.subnetwork(batch, train=train)
        out = outputs["output"]
        return self.out.with_tensor(out.tensor, like=out).replace(logits=out.logits)
