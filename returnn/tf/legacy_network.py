"""The network of a config without ``network``: RETURNN's legacy description (``hidden_size``, ``hidden_type``,
``activation``, ``bidirectional``, ``dropout``, ``L2_reg``, ``loss``, ...) as the net dict RETURNN builds from it.

Hidden layers ``hidden_0``, ``hidden_1``, ... (or ``hidden_name``) form a chain from ``data``; ``hidden_type``
(default "forward") and ``activation`` repeat their last entry, ``dropout`` gives one rate per hidden layer
and one for ``output``, a softmax with ``loss`` (default "ce"). With ``bidirectional`` (default true) the chain
is built a second time: recurrent layer types get names ``*_fw`` / ``*_bw`` (the second running backwards);
other types keep their names, so (as in RETURNN) the second chain is the first again and ``output`` reads the
last hidden layer twice, its input concatenated with itself.
"""

from __future__ import annotations

from typing import Any

from returnn.errors import ConfigError, LayerConfigError
from returnn.tf.layers import get_layer_class

LEGACY_KEYS = ("hidden_size", "hidden_type", "hidden_name")


def has_legacy_description(config: Any) -> bool:
    """Whether the config describes its network the legacy way (``hidden_size`` without ``network``)."""
    return config.typed_value("network") is None and config.has("hidden_size")


def _padded(items: list, count: int, *, fill: Any) -> list:
    """``items`` extended to ``count`` entries with ``fill``."""
    return items + [fill] * (count - len(items))


def _hidden_layers(config: Any) -> list[dict[str, Any]]:
    """One dict per hidden layer: name, class, n_out, activation, dropout."""
    sizes = config.int_list("hidden_size")
    if not sizes:
        raise ConfigError('config key "hidden_size": expected one size per hidden layer, e.g. "512,512"')
    types, names = config.list("hidden_type"), config.list("hidden_name")
    if len(types) > len(sizes) or len(names) > len(sizes):
        raise ConfigError(f'config keys "hidden_type" / "hidden_name": more entries than "hidden_size" has layers '
                          f"({len(sizes)})")
    types = _padded(types, len(sizes), fill=types[0] if len(types) == 1 else "forward")
    names = [f"hidden_{i}" if name == "_" else name for i, name in enumerate(_padded(names, len(sizes), fill="_"))]
    activations = config.list("activation")
    if not activations:
        raise ConfigError('config key "activation": required with "hidden_size" (e.g. "tanh" or "relu,relu")')
    activations = _padded(activations, len(sizes), fill=activations[-1])
    dropout = [float(rate) for rate in config.list("dropout", [0.0])]
    dropout = _padded(dropout, len(sizes) + 1, fill=dropout[-1])
    return [{"name": name, "class": layer_class, "n_out": size, "activation": act, "dropout": rate}
            for name, layer_class, size, act, rate in zip(names, types, sizes, activations, dropout)] \
        + [{"dropout": dropout[-1]}]


def _common_opts(config: Any) -> dict[str, Any]:
    """Options RETURNN gives every layer (``L2_reg``, inits); unset or zero ones are left out."""
    if config.float("L1_reg", 0.0):
        raise ConfigError('config key "L1_reg": L1 regularization is not supported; use "L2_reg" or a "network" '
                          'dict with "L2"')
    opts: dict[str, Any] = {}
    if config.float("L2_reg", 0.0):
        opts["L2"] = config.float("L2_reg")
    for key in ("forward_weights_init", "bias_init"):
        if config.value(key) is not None:
            opts[key] = config.typed_value(key)
    return opts


def _is_recurrent(layer_class: str) -> bool:
    """Whether RETURNN names a layer of this class ``*_fw`` / ``*_bw`` (its recurrent layer: "rec")."""
    try:
        return get_layer_class(layer_class).layer_class == "rec"
    except LayerConfigError as exc:
        raise ConfigError(f'config key "hidden_type": {exc}') from None


def _chain(hidden: list[dict[str, Any]], common: dict[str, Any], *, backward: bool) -> dict[str, dict[str, Any]]:
    """The hidden layers from ``data`` on; recurrent ones named ``*_fw`` / ``*_bw`` and running backwards."""
    net, last = {}, "data"
    for info in hidden:
        layer = {**common, **{k: v for k, v in info.items() if k != "name"}, "from": [last]}
        name = info["name"]
        if _is_recurrent(info["class"]):
            name += "_bw" if backward else "_fw"
            if backward:
                layer["direction"] = -1
        net[name] = layer
        last = name
    return net


def legacy_net_dict(config: Any) -> dict[str, dict[str, Any]]:
    """The net dict RETURNN builds from the legacy description in ``config``."""
    *hidden, output_info = _hidden_layers(config)
    common = _common_opts(config)
    if config.int("truncation", -1) != -1:
        raise ConfigError('config key "truncation": truncated backpropagation is not supported (use -1)')
    net = _chain(hidden, common, backward=False)
    sources = [list(net)[-1]]
    if config.bool("bidirectional", True):
        backward = _chain(hidden, common, backward=True)
        net.update(backward)
        sources.append(list(backward)[-1])
    net["output"] = {**common, "class": "softmax", "loss": config.value("loss", "ce"),
                     "dropout": output_info["dropout"], "from": sources}
    return net


def net_dict_from_config(config: Any) -> dict[str, Any]:
    """``config["network"]``, else the legacy description translated; neither is an error naming both."""
    net_dict = config.typed_value("network")
    if net_dict is None and has_legacy_description(config):
        return legacy_net_dict(config)
    if net_dict is None:
        raise ConfigError('config key "network": missing; expected a dict of layer dicts (or RETURNN\'s legacy '
                          '"hidden_size" / "hidden_type" / "activation" keys)')
    return net_dict
