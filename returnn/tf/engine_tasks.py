"""Runners of the tasks train, eval, forward and search (selected by the config key ``task``)."""

from __future__ import annotations

from returnn.config import Config
from returnn.errors import ConfigError
from returnn.log import logger
from returnn.tf.engine import Engine
from returnn.tf.engine_scripting import task_network_options
from returnn.util.progress import format_scores


def run_train(config: Config) -> None:
    """Task train: epochs of training with dev scores, checkpoints and learning-rate control."""
    Engine(config).train()


def load_for_inference(engine: Engine) -> int:
    """The params of a loaded model for eval (see ``Engine.load_for_inference``); returns the epoch."""
    return engine.load_for_inference()


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
    with ``forward_use_search`` the network searches (the best hypothesis of each sequence is written). With no
    model to load, the params stay freshly initialized (a warning says so)."""
    search, output_layer = task_network_options(config)
    engine = Engine(config, search=search, output_layer=output_layer)
    engine.init_network_from_config()
    num = engine.forward_to_hdf()
    logger.info(f"forward: {num} sequences written to {config.value('output_file')}")


def run_search(config: Config) -> dict:
    """Task search: beam search through the choice layers for every sequence of ``search_data`` (see
    ``returnn.tf.search``)."""
    search, output_layer = task_network_options(config)
    engine = Engine(config, search=search, output_layer=output_layer)
    engine.init_network_from_config()
    return engine.search()
