"""RETURNN's scripting API of the ``Engine`` (as RETURNN's demos/demo-returnn-as-framework.py uses it):
``init_train_from_config``, ``init_network_from_config``, ``forward_to_hdf``, ``search``, ``finalize``."""

from __future__ import annotations

from returnn.config import Config
from returnn.datasets import Dataset
from returnn.datasets.batching import inference_batch_config
from returnn.errors import ConfigError
from returnn.tensor.extern_data import check_dataset_matches_extern_data
from returnn.tf.forward import forward_to_hdf as _forward_to_hdf
from returnn.tf.search import search_and_write


class EngineScripting:
    """Mixin of ``Engine``: each method hands off to the engine's own training, forward and search code."""

    def _check_same_config(self, config: Config | None, method: str) -> None:
        if config is not None and config is not self.config:
            raise ConfigError(f"Engine.{method}: got another config than the one this Engine was built from; "
                              "build a new Engine(config) for it")

    def init_train_from_config(self, config: Config | None = None, train_data: Dataset | None = None,
                               dev_data: Dataset | None = None, eval_data: Dataset | None = None) -> None:
        """Prepare ``train``: the datasets given here replace the config's ``train``, ``dev`` and ``eval`` (if any is
        given, only those are used); the updater is made and the newest checkpoint restored (``init_train``)."""
        self._check_same_config(config, "init_train_from_config")
        given = {"train": train_data, "dev": dev_data, "eval": eval_data}
        self._network_for(next((dataset for dataset in given.values() if dataset is not None), None))
        if any(dataset is not None for dataset in given.values()):
            for key, dataset in given.items():
                if dataset is not None:
                    check_dataset_matches_extern_data(dataset, self.network.extern_data, key)
            self._given_datasets = given
        self._start_epoch = self.init_train()

    def init_network_from_config(self, config: Config | None = None) -> None:
        """Prepare ``forward_to_hdf`` / ``search`` / ``eval_dataset``: the network the config's ``task`` runs
        (searching for task search), with params loaded by ``load_for_inference`` (task forward: fresh if none)."""
        self._check_same_config(config, "init_network_from_config")
        search, output_layer = task_network_options(self.config)
        self._network_for(None)
        if (search, output_layer) != (self._search, self._output_layer):
            self._build_network(search=search, output_layer=output_layer)
        self.epoch = self.load_for_inference(allow_fresh=self.config.value("task", "train") == "forward")

    def forward_to_hdf(self, data: Dataset | None = None, output_file: str | None = None, combine_labels: str = "",
                       batch_size: int = 0, output_layer: str | None = None) -> int:
        """Write ``output_layer`` (default: config ``forward_output_layer``, else output) of every sequence of
        ``data`` (default: config ``forward_data``, else ``eval``) to the HDF ``output_file`` (default: config
        ``output_file``); ``batch_size`` 0: config ``forward_batch_size``, else ``batch_size``. Returns #seqs."""
        config = self.config
        if combine_labels:
            raise ConfigError(f"Engine.forward_to_hdf: combine_labels={combine_labels!r} is not supported; "
                              "forward writes the layer output itself")
        if data is None:
            data = self.dataset("forward_data" if config.has("forward_data") else "eval")
            if data is None:
                raise ConfigError('task forward needs a dataset: set "eval" (or "forward_data")')
        else:
            check_dataset_matches_extern_data(data, self._network_for(data).extern_data, "forward_data")
        output_file = output_file or config.value("output_file")
        if not output_file:
            raise ConfigError('task forward needs "output_file" (the HDF file to write)')
        batch_config = inference_batch_config(config, "forward_batch_size", batch_size)
        layer = output_layer or config.value("forward_output_layer", "output")
        # fresh params (epoch 0) read the data in the order of epoch 1
        return _forward_to_hdf(self.network, data, batch_config, layer=layer, output_file=output_file,
                               epoch=self.epoch or 1)

    def search(self, dataset: Dataset | None = None, do_eval: bool | None = None, output_layer_name: str | None = None,
               output_file: str | None = None, output_file_format: str | None = None) -> dict:
        """Beam search over ``dataset`` (default: config ``search_data``); arguments left None come from the config
        keys ``search_do_eval``, ``search_output_layer``, ``search_output_file``, ``search_output_file_format``."""
        return search_and_write(self, self.config, epoch=self.epoch or 1, dataset=dataset, do_eval=do_eval,
                                layer=output_layer_name, output_file=output_file, output_file_format=output_file_format)

    def finalize(self) -> None:
        """Flush the TensorBoard summaries (RETURNN scripts call this at the end)."""
        if self._summary_writer is not None:
            self._summary_writer.flush()


def task_network_options(config: Config) -> tuple[bool, str | None]:
    """What the config's ``task`` builds besides the losses: (search?, output layer)."""
    task = config.value("task", "train")
    if task == "search":
        return True, config.value("search_output_layer", "output")
    if task == "forward":
        return config.bool("forward_use_search", False), config.value("forward_output_layer", "output")
    return False, None
