"""Runners of the tasks train, eval, forward and search (selected by the config key ``task``)."""

from __future__ import annotations

from returnn.config import Config
from returnn.errors import ConfigError
from returnn.log import logger
from returnn.tf import checkpoint as ckpt
from returnn.tf.engine import Engine
from returnn.tf.forward import forward_to_hdf
from returnn.tf.search import search_and_write
from returnn.util.progress import format_scores


def run_train(config: Config) -> None:
    """Task train: epochs of training with dev scores, checkpoints and learning-rate control."""
    Engine(config).train()


def load_for_inference(engine: Engine) -> int:
    """Load ``load`` (a checkpoint path), else epoch ``load_epoch``, else the newest ``model.NNN``; returns the epoch."""
    config = engine.config
    if config.value("load"):
        engine.load_model(config.value("load"), params_only=True)
        return config.int("load_epoch", 1)
    model = engine.model_prefix()
    epochs = ckpt.existing_epochs(model)
    epoch = config.int("load_epoch", epochs[-1] if epochs else 0)
    if not epoch or epoch not in epochs:
        raise ConfigError(f'no model to load: "model" is {model!r} and the complete checkpoints on disk are for '
                          f"epochs {epochs or 'none'}" + (f"; load_epoch {epoch} is not among them" if epoch else ""))
    engine.load_model(ckpt.epoch_checkpoint_prefix(model, epoch), params_only=True)
    return epoch


def run_eval(config: Config) -> dict[str, dict]:
    """Task eval: scores of ``eval_datasets`` (default: dev and eval, whichever are set) for the loaded model."""
    engine = Engine(config)
    epoch = load_for_inference(engine)
    keys = config.list("eval_datasets", [k for k in ("dev", "eval") if config.typed_value(k) is not None])
    if not keys:
        raise ConfigError('task eval needs a dataset: set "dev" or "eval" (or "eval_datasets")')
    results = {}
    for key in keys:
        dataset = engine.dataset(key)
        if dataset is None:
            raise ConfigError(f'config key "eval_datasets" names {key!r}, which is not set in the config')
        results[key] = engine.eval_dataset(dataset, epoch).epoch_error_dict(key)
        logger.info(f"epoch {epoch} {key}: {format_scores({k: v for d in results[key].values() for k, v in d.items()})}")
    return results


def run_forward(config: Config) -> None:
    """Task forward: ``forward_output_layer`` (default output) of every sequence of ``forward_data`` or ``eval``;
    with ``forward_use_search`` the network searches (the best hypothesis of each sequence is written)."""
    engine = Engine(config, search=config.bool("forward_use_search", False),
                    output_layer=config.value("forward_output_layer", "output"))
    epoch = load_for_inference(engine)
    key = "forward_data" if config.has("forward_data") else "eval"
    dataset = engine.dataset(key)
    if dataset is None:
        raise ConfigError('task forward needs a dataset: set "eval" (or "forward_data")')
    output_file = config.value("output_file")
    if not output_file:
        raise ConfigError('task forward needs "output_file" (the HDF file to write)')
    batch_config = Config({"batch_size": config.typed_value("forward_batch_size", config.typed_value("batch_size", 1)),
                           "max_seqs": config.int("max_seqs", -1)})
    num = forward_to_hdf(engine.network, dataset, batch_config, layer=config.value("forward_output_layer", "output"),
                         output_file=output_file, epoch=epoch)
    logger.info(f"forward: {num} sequences written to {output_file}")


def run_search(config: Config) -> dict:
    """Task search: beam search through the choice layers for every sequence of ``search_data`` (see
    ``returnn.tf.search``)."""
    engine = Engine(config, search=True, output_layer=config.value("search_output_layer", "output"))
    epoch = load_for_inference(engine)
    return search_and_write(engine, config, epoch=epoch)
