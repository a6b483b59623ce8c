"""Task export: a TensorFlow SavedModel of the network for serving, loadable with plain ``tf.saved_model.load``.

Signatures (all dims but the feature / vocab dims dynamic; inputs named as the extern keys the network reads,
``data`` and its lengths ``data_seq_len``):

- ``serving_default``: ``forward_output_layer`` (default ``output``) as ``output`` [B, T, ...] (batch major) and
  its lengths ``output_seq_len`` [B] (when it has a dynamic time axis).
- ``search`` (when the network has choice layers): the network built for search, ``search_output_layer``
  (default ``output``) as the n-best list of each sequence, best first: ``hyps`` [B, beam, T], ``hyp_lens``
  [B, beam], ``scores`` [B, beam].

Both networks use the same variables, saved once. Native op libraries the graphs use are copied into
``<export_dir>/native_ops/``; load them with ``tf.load_op_library`` before ``tf.saved_model.load``.
"""

from __future__ import annotations

import os
import shutil
from typing import Any, Callable, Iterator, Mapping

import tensorflow as tf

from returnn.config import Config
from returnn.errors import ConfigError
from returnn.log import logger
from returnn.tensor.data import Data
from returnn.tf.engine import Engine
from returnn.tf.native_op.build import loaded_libraries
from returnn.tf.network import Network
from returnn.util.atomic import atomic_dir

SERVING_SIGNATURE = "serving_default"
SEARCH_SIGNATURE = "search"
NATIVE_OPS_DIR = "native_ops"


def signature_key(key: str) -> str:
    """The signature name of a batch key: ``data:seq_len`` -> ``data_seq_len`` (``:`` is not allowed there)."""
    return key.replace(":", "_")


def has_choice_layer(net_dict: Mapping[str, Any]) -> bool:
    """Whether a ``choice`` layer is in the net dict or in one of its subnetworks (rec units, subnetworks)."""
    stack = [net_dict]
    while stack:
        for spec in stack.pop().values():
            if not isinstance(spec, Mapping):
                continue
            if spec.get("class") == "choice":
                return True
            stack.extend(spec[key] for key in ("unit", "subnetwork") if isinstance(spec.get(key), Mapping))
    return False


def _flat_function(network: Network, body: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
    """``body`` (batch dict -> output dict) as a ``tf.function`` taking each input as its own named tensor, as
    signatures need; batch and dynamic dims None."""
    specs = network.input_signature()
    keys = list(specs)
    flat = [tf.TensorSpec(spec.shape, spec.dtype, name=signature_key(key)) for key, spec in specs.items()]

    def function(*args: Any) -> dict[str, Any]:
        return body(dict(zip(keys, args)))

    return tf.function(function, input_signature=flat, autograph=False)


def _batch_time_major(data: Data) -> Data:
    """Batch axis first, then the time axis (if any)."""
    data = data.copy_as_batch_major()
    return data if data.time_dim_axis is None else data.copy_move_axis(data.time_dim_axis, 1)


def check_output_layer(network: Network, layer: str, key: str) -> Data:
    """The template of ``layer``, which config key ``key`` names; a ConfigError when it is missing or has no batch."""
    if layer not in network.layers:
        raise ConfigError(f'config key "{key}": no layer {layer!r} to export; layers: {", ".join(network.layers)}')
    template = network.templates[layer]
    if template.batch_dim_axis is None:
        raise ConfigError(f'config key "{key}": layer {layer!r} has no batch axis ({template.describe()})')
    return template


def forward_body(network: Network, layer: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Batch -> ``output`` (batch major) and ``output_seq_len``."""
    check_output_layer(network, layer, "forward_output_layer")

    def forward(batch: dict[str, Any]) -> dict[str, Any]:
        out = _batch_time_major(network(batch, train=False)[layer])
        result = {"output": tf.identity(out.tensor, name="output")}
        if out.seq_lens is not None:
            result["output_seq_len"] = tf.identity(out.seq_lens, name="output_seq_len")
        return result

    return forward


def search_body(network: Network, layer: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Batch -> the n-best list of each sequence, best first: ``hyps`` [B, beam, T], ``hyp_lens``, ``scores``."""
    template = check_output_layer(network, layer, "search_output_layer")
    if not template.sparse or template.beam is None or template.time_dim_axis is None:
        raise ConfigError(f'config key "search_output_layer": layer {layer!r} gives {template.describe()}; the '
                          "search signature needs the labels of every beam entry (a rec layer whose choice searches)")
    beam = template.beam.beam_size

    def search(batch: dict[str, Any]) -> dict[str, Any]:
        out = _batch_time_major(network(batch)[layer])
        labels, lens, scores = out.tensor, out.seq_lens, out.beam_scores
        n_batch = tf.shape(labels)[0] // beam
        labels = tf.reshape(labels, [n_batch, beam, tf.shape(labels)[1]])
        lens, scores = tf.reshape(lens, [n_batch, beam]), tf.reshape(scores, [n_batch, beam])
        order = tf.argsort(scores, axis=1, direction="DESCENDING", stable=True)  # as the search task sorts
        return {"hyps": tf.gather(labels, order, batch_dims=1, name="hyps"),
                "hyp_lens": tf.gather(lens, order, batch_dims=1, name="hyp_lens"),
                "scores": tf.gather(scores, order, batch_dims=1, name="scores")}

    return search


def beam_layer(net_dict: Mapping[str, Any], layer: str) -> str:
    """The layer whose beam entries the search signature gives: ``layer``, or the layer a ``decide`` on it reads
    (RETURNN configs often name the decision as ``search_output_layer``; the n-best list comes from before it)."""
    spec = net_dict.get(layer)
    while isinstance(spec, Mapping) and spec.get("class") == "decide" and isinstance(spec.get("from"), str):
        layer = spec["from"]
        spec = net_dict.get(layer)
    return layer


class ExportModule(tf.Module):
    """What the SavedModel holds: the variables (once, though both networks use them) and the signatures."""

    def __init__(self, variables: list[tf.Variable], functions: Mapping[str, Any]):
        super().__init__(name="returnn_export")
        self.params = variables
        self.functions = dict(functions)


def _share_variables(params: Mapping[str, tf.Variable]) -> Iterator[None]:
    """A variable creator scope: a new variable whose name and shape are in ``params`` is replaced by that one."""
    def creator(next_creator: Callable, **kwargs: Any) -> tf.Variable:
        var = next_creator(**kwargs)  # made first: its full name depends on the name scopes it is made in
        existing = params.get(var.name.split(":")[0])
        return existing if existing is not None and tuple(existing.shape) == tuple(var.shape) else var

    return tf.variable_creator_scope(creator)


def build_export_module(config: Config) -> tuple[ExportModule, int]:
    """The forward network (and the search network when there is a choice layer) with params loaded by
    ``load`` / ``load_epoch`` / the newest checkpoint; returns the module and the loaded epoch."""
    if all(config.typed_value(key) is None for key in ("extern_data", "num_inputs", "num_outputs")):
        raise ConfigError('task export needs "extern_data" (or "num_inputs" / "num_outputs") in the config: the '
                          "exported signatures take their input names, dtypes and dims from it")
    forward_layer = config.value("forward_output_layer", "output")
    engine = Engine(config, output_layer=forward_layer)
    epoch = engine.load_for_inference()
    params = engine.network.get_params()
    functions = {SERVING_SIGNATURE: _flat_function(engine.network, forward_body(engine.network, forward_layer))}
    variables = list(params.values())
    if has_choice_layer(config.typed_value("network")):
        search_layer = beam_layer(config.typed_value("network"), config.value("search_output_layer", "output"))
        with _share_variables(params):
            search_engine = Engine(config, search=True, output_layer=search_layer)
        search_engine.load_for_inference()  # the params the forward network does not have
        known = {id(var) for var in variables}
        variables += [var for var in search_engine.network.get_params().values() if id(var) not in known]
        functions[SEARCH_SIGNATURE] = _flat_function(search_engine.network,
                                                     search_body(search_engine.network, search_layer))
    return ExportModule(variables, functions), epoch


def export_model(config: Config, export_dir: str | None = None) -> str:
    """Write the SavedModel of the config's network and loaded params to ``export_dir`` (default: config
    ``export_dir``), replacing what is there only once complete; returns the folder."""
    export_dir = export_dir or config.value("export_dir")
    if not export_dir:
        raise ConfigError('task export needs "export_dir": the folder to write the SavedModel to')
    module, epoch = build_export_module(config)
    concrete = {name: function.get_concrete_function() for name, function in module.functions.items()}
    libraries = loaded_libraries()  # after tracing: the ops the graphs use are loaded by now
    with atomic_dir(export_dir) as tmp_dir:
        tf.saved_model.save(module, tmp_dir, signatures=concrete)
        if libraries:
            os.makedirs(os.path.join(tmp_dir, NATIVE_OPS_DIR))
            for path in libraries.values():
                shutil.copy2(path, os.path.join(tmp_dir, NATIVE_OPS_DIR, os.path.basename(path)))
    logger.info(f"export: SavedModel of epoch {epoch} written to {export_dir} (signatures "
                f"{', '.join(concrete)}" + (f"; load {NATIVE_OPS_DIR}/*.so with tf.load_op_library first)"
                                            if libraries else ")"))
    return export_dir


def run_export(config: Config) -> str:
    """Task export (``++export_dir DIR``, params from ``load`` / ``load_epoch`` / the newest checkpoint)."""
    return export_model(config)
