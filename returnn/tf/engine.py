"""The ``Engine``: builds the network once from the config and runs training epochs, evaluation and forwarding.

Training state lives in two files per run: checkpoints ``model.NNN`` (params, optimizer state, step
counter; see ``returnn.tf.checkpoint``) and the ``learning_rate_file`` (learning rates and scores per
epoch). After each epoch the learning-rate file is written first, then the checkpoint; a restart resumes
after the newest complete checkpoint and forgets scores of epochs that have none.

Its parts: checkpoints (``engine_checkpoints``), RETURNN's scripting API (``engine_scripting``) and
TensorBoard scalars (``engine_summaries``) are mixins; training and evaluation are here.
"""

from __future__ import annotations

import math
import os
import time

import tensorflow as tf

from returnn.config import Config, get_global_config
from returnn.datasets import Dataset, batch_generator_from_config
from returnn.datasets.base import init_dataset_from_config
from returnn.errors import ConfigError, ReturnnError
from returnn.log import DETAIL, logger
from returnn.lr_control import LearningRateControl, learning_rate_control_from_config
from returnn.tensor.extern_data import check_dataset_matches_extern_data
from returnn.tf import checkpoint as ckpt
from returnn.tf.distributed import is_chief, strategy_from_config, strategy_scope
from returnn.tf.engine_checkpoints import EngineCheckpoints
from returnn.tf.engine_scripting import EngineScripting
from returnn.tf.engine_summaries import EngineSummaries, flat_errors
from returnn.tf.legacy_network import net_dict_from_config
from returnn.tf.model_cleanup import cleanup_options, epochs_to_delete
from returnn.tf.network import Network
from returnn.tf.pretrain import pretrain_from_config
from returnn.tf.steps import ScoreAccumulator, make_eval_step, make_train_step, warn_on_retrace
from returnn.tf.updater import Updater
from returnn.util.progress import StepReporter, format_scores


class NonFiniteScoreError(ReturnnError, FloatingPointError):
    """A training step gave a NaN or Inf loss (``stop_on_nonfinite_train_score``)."""


class Engine(EngineCheckpoints, EngineScripting, EngineSummaries):
    """One network built from ``config["network"]``; tasks call ``train``, ``eval_model`` or ``forward_to_hdf``."""

    def __init__(self, config: Config | None = None, *, search: bool = False, output_layer: str | None = None):
        self.config = config if config is not None else get_global_config()
        config = self.config
        tf.random.set_seed(config.int("random_seed", 42))
        self.strategy = strategy_from_config(config)  # None: one device; variables are made in its scope
        self.is_chief = is_chief(self.strategy)  # only the chief of a multi-worker cluster writes files
        # search: choice layers search, no losses; output_layer: what a task outputs is built too
        self._search, self._output_layer = search, output_layer
        self.network: Network | None = None  # without extern_data in the config: built from the first dataset given
        if any(config.typed_value(key) is not None for key in ("extern_data", "num_inputs", "num_outputs")):
            self._build_network(search=search, output_layer=output_layer)
        self.full_net_dict = self.net_dict = net_dict_from_config(config)
        self.pretrain = pretrain_from_config(config, self.full_net_dict)
        self.model = config.value("model")
        self.updater: Updater | None = None
        self.lr_control: LearningRateControl | None = None
        self.epoch = 0
        self._eval_step = None
        self._summary_writer = None
        self._steps_last_epoch: int | None = None
        self._memory_note_done = False
        self._given_datasets: dict[str, Dataset | None] | None = None  # from init_train_from_config
        self._start_epoch: int | None = None  # init_train done ahead of train (init_train_from_config)

    def _build_network(self, *, search: bool, output_layer: str | None) -> None:
        self._search, self._output_layer = search, output_layer
        with strategy_scope(self.strategy):
            self.network = Network.from_config(self.config, search=search,
                                               also_build=[output_layer] if output_layer else [])
        self._eval_step = None

    def _network_for(self, dataset: Dataset | None) -> Network:
        """The network; built first (extern_data from ``dataset``'s data keys) when the config has no extern_data."""
        if self.network is None:
            if dataset is None:
                raise ConfigError('config needs "extern_data" (or "num_inputs" / "num_outputs"), or a dataset to take '
                                  "it from: Engine.init_train_from_config(train_data=...)")
            self.config.set("extern_data", dataset.get_extern_data(), origin=f"the data keys of dataset {dataset.name!r}")
            logger.info(f"extern_data from dataset {dataset.name!r}: {', '.join(dataset.get_data_keys())}")
            self._build_network(search=self._search, output_layer=self._output_layer)
        return self.network

    # ---- datasets --------------------------------------------------------------------------

    def dataset(self, key: str, *, train: bool = False) -> Dataset | None:
        """The dataset of config key ``key`` (train, dev, eval, ...) with the config-wide defaults, or None.

        Its data keys are checked against ``extern_data``, so a dim mismatch is named before any step runs.
        """
        try:
            dataset = init_dataset_from_config(self.config, key, train=train)
        except ReturnnError as exc:
            raise type(exc)(f'config key "{key}": {exc}') from exc
        if dataset is not None and self.network is not None:
            check_dataset_matches_extern_data(dataset, self.network.extern_data, key)
        return dataset

    def _batches(self, dataset: Dataset, epoch: int, *, train: bool):
        return batch_generator_from_config(dataset, self.config, epoch=epoch, train=train)

    # ---- the network of an epoch (pretraining grows it) ---------------------------------------

    def net_dict_for_epoch(self, epoch: int) -> dict:
        """The net dict trained in ``epoch``: a pretraining stage, else the config's ``network``."""
        return self.pretrain.net_dict_for_epoch(epoch) if self.pretrain else self.full_net_dict

    def use_net_dict(self, net_dict: dict) -> bool:
        """Rebuild the network if ``net_dict`` differs; params move over by name where shapes match."""
        if net_dict == self.net_dict:
            return False
        old_params = {name: var.numpy() for name, var in self.network.get_params().items()}
        self.net_dict = net_dict
        with strategy_scope(self.strategy):
            self.network = Network(net_dict, extern_data=self.network.extern_data,
                                   random_seed=self.config.int("random_seed", 42), options=self.network.options)
        new_params = self.network.get_params()
        copied = {n: v for n, v in old_params.items() if n in new_params and tuple(new_params[n].shape) == v.shape}
        self.network.load_params(copied, ignore_missing=True)
        self._eval_step = None
        if self.updater is not None:
            old = self.updater
            with strategy_scope(self.strategy):
                self.updater = Updater(self.config, list(self.network.trainable_variables))
            self.updater.global_train_step.assign(old.global_train_step)
            self.updater.learning_rate.assign(old.learning_rate)
        logger.info(f"Network now has layers {', '.join(self.network.layers)} ({len(copied)} params carried over)")
        return True

    # ---- training ----------------------------------------------------------------------------

    def init_train(self) -> int:
        """Create the updater and learning-rate control, restore the newest checkpoint; returns the first epoch to run."""
        lr_file = self.config.value("learning_rate_file")
        lr_file_existed = bool(lr_file) and os.path.exists(lr_file)
        self.lr_control = learning_rate_control_from_config(self.config)
        model = self.model_prefix()
        if self.is_chief:  # another worker's temp files are the chief's, being written
            ckpt.remove_stale_temp_files(model)
        epochs = ckpt.existing_epochs(model)
        self.use_net_dict(self.net_dict_for_epoch(epochs[-1] if epochs else 1))
        with strategy_scope(self.strategy):
            self.updater = Updater(self.config, list(self.network.trainable_variables))
        if epochs:
            self.epoch = self._load_newest_readable_checkpoint(model, epochs)
        elif self.config.value("load"):
            self.load_model(self.config.value("load"), params_only=True)
        else:
            if self.config.value("import_model_train_epoch1"):
                self.load_model(self.config.value("import_model_train_epoch1"), params_only=True)
            self._preload_from_files()
        for epoch, data in self.lr_control.epoch_data.items():
            if epoch > self.epoch:
                data.error.clear()  # scores of epochs whose checkpoint was never completed
        if epochs:
            self._log_resume_learning_rate(self.epoch + 1, lr_file_existed)
        return self.epoch + 1

    def _log_resume_learning_rate(self, epoch: int, lr_file_existed: bool) -> None:
        """On resume, say which learning rate ``epoch`` uses and why: the learning-rate file wins over the
        config's ``learning_rate`` (also over ``++learning_rate``); without the file the rate restarts."""
        config_lr = self.config.float("learning_rate", 1.0)
        filename = self.lr_control.filename
        if not lr_file_existed:
            where = f"learning_rate_file {filename!r} does not exist" if filename else 'no "learning_rate_file" is set'
            logger.warning(f"Resuming after epoch {epoch - 1} (checkpoints exist), but {where}: the learning rate "
                           f"restarts at the initial learning_rate {config_lr:g} and earlier scores are unknown")
            return
        stored = self.lr_control.epoch_data.get(epoch)
        source = "stored for this epoch" if stored is not None and stored.learning_rate else \
            f"continued by {self.lr_control.kind} learning-rate control from the stored epochs"
        learning_rate = self.lr_control.get_learning_rate_for_epoch(epoch)
        note = ""
        if self.config.has("learning_rate") and not math.isclose(config_lr, learning_rate):
            note = (f"; the config's learning_rate {config_lr:g} (from {self.config.origin('learning_rate')}) "
                    f"is the initial rate only and is not used (delete the file's entries to restart it)")
        logger.info(f"Resuming at epoch {epoch} with learning rate {learning_rate:g} from learning_rate_file "
                    f"{filename!r} ({source}){note}")

    def train(self) -> None:
        """Epochs ``1 .. num_epochs`` of ``train``, scoring ``dev`` and ``eval`` after each; resumes after a restart."""
        given = self._given_datasets
        train_data = given["train"] if given is not None else self.dataset("train", train=True)
        if train_data is None:
            raise ConfigError('config key "train" is missing: task train needs a training dataset')
        self._network_for(train_data)
        eval_sets = {key: ds for key in ("dev", "eval")
                     if (ds := given[key] if given is not None else self.dataset(key)) is not None}
        num_epochs = self.config.int("num_epochs", 5)
        cleanup_options(self.config.typed_value("cleanup_old_models"))  # a bad value fails now, not after an epoch
        start_epoch = self._start_epoch if self._start_epoch is not None else self.init_train()
        self._start_epoch = None
        if start_epoch > num_epochs:
            logger.info(f"Training already finished: model for epoch {start_epoch - 1} exists (num_epochs {num_epochs})")
            return
        logger.info(f"Start training at epoch {start_epoch} of {num_epochs}")
        last_best = last_best_model_options(self.config)
        train_step = None
        for epoch in range(start_epoch, num_epochs + 1):
            self.epoch = epoch
            if self.use_net_dict(self.net_dict_for_epoch(epoch)) or train_step is None:
                if train_step is not None:
                    warn_on_retrace(train_step, "train")
                train_step = make_train_step(self.network, self.updater, jit_compile=self._jit_compile(),
                                             strategy=self.strategy)
            if last_best is not None:
                self._maybe_use_last_best_model(epoch, last_best)
            self._train_epoch(epoch, train_data, eval_sets, train_step, num_epochs)
        warn_on_retrace(train_step, "train")

    def _jit_compile(self) -> bool:
        jit_compile = self.config.bool("jit_compile", False)
        if jit_compile and self.strategy is not None:
            raise ConfigError('config keys "jit_compile" and "distributed": XLA compilation of the distributed train '
                              "step is not supported; set jit_compile = False")
        return jit_compile

    def _maybe_use_last_best_model(self, epoch: int, options: dict) -> None:
        """``use_last_best_model``: before ``epoch``, continue from the best recent epoch's params (fresh
        optimizer state) when the last epoch is not the best; checked every ``modulo`` epochs, and after a
        last score above ``filter_score``."""
        first = (self.pretrain.num_pretrain_epochs() + 1) if self.pretrain else 1  # the full network's epochs
        if epoch <= first:
            return
        opts = dict(options)
        modulo = opts.pop("modulo", 1)
        last_score = self.lr_control.get_epoch_error_key_value(epoch - 1)[1]
        if epoch % modulo != 0 and (last_score or 0.0) <= opts.get("filter_score", math.inf):
            return
        best = self.lr_control.get_last_best_epoch(epoch - 1, first_epoch=first, **opts)
        if best is None or best == epoch - 1:
            return
        best_score = self.lr_control.get_epoch_error_key_value(best)[1]
        last = "none" if last_score is None else f"{last_score:.4g}"
        scores = f"epoch {best} (score {best_score:.4g}) beats epoch {epoch - 1} (score {last})"
        if best not in ckpt.existing_epochs(self.model_prefix()):
            logger.warning(f"use_last_best_model: {scores}, but its model was not saved (save_interval); continuing")
            return
        logger.info(f"use_last_best_model: {scores}; continuing from epoch {best} with a fresh optimizer state")
        self.load_model(ckpt.epoch_checkpoint_prefix(self.model_prefix(), best), params_only=True)
        self.updater.optimizer.reset()

    def _train_epoch(self, epoch: int, train_data: Dataset, eval_sets: dict, train_step, num_epochs: int) -> None:
        learning_rate = self.lr_control.get_learning_rate_for_epoch(epoch)
        self.updater.set_learning_rate(learning_rate)
        start = time.monotonic()
        meta = {"global_train_step": int(self.updater.global_train_step.numpy()),
                "effective_learning_rate": float(self.updater.learning_rate.numpy())}
        scores = self._run_train_epoch(epoch, train_data, train_step, learning_rate=learning_rate)
        meta.update(epoch_num_train_steps=self._steps_last_epoch, epoch_train_time_secs=round(time.monotonic() - start))
        self.lr_control.set_epoch_meta(epoch, meta)  # as RETURNN: step count at the epoch's start, steps, seconds
        errors = scores.epoch_error_dict("train")
        summary = [f"train: {format_scores(flat_errors(errors))}"]
        try:
            for key, dataset in eval_sets.items():
                dataset_scores = self.eval_dataset(dataset, epoch)
                errors.update(dataset_scores.epoch_error_dict(key))
                summary.append(f"{key}: {format_scores(flat_errors(dataset_scores.epoch_error_dict(key)))}")
        except BaseException:
            self._save_trained_epoch_after_failed_eval(epoch, errors)
            raise
        self._finish_epoch(epoch, errors)
        if epoch % self.config.int("save_interval", 1) == 0 or epoch == num_epochs:
            self.save_model(epoch)
            self._cleanup_old_models(num_epochs)
        self._write_epoch_summary(epoch, learning_rate, errors)
        logger.info(f"epoch {epoch} lr {learning_rate:.4g} {'; '.join(summary)}; {time.monotonic() - start:.1f} sec")

    def _finish_epoch(self, epoch: int, errors: dict) -> None:
        """Record the epoch's scores in the learning-rate file (written before its checkpoint)."""
        self.lr_control.set_epoch_error(epoch, errors)
        if self.is_chief:
            self.lr_control.save()

    def _save_trained_epoch_after_failed_eval(self, epoch: int, errors: dict) -> None:
        """Scoring dev/eval failed: keep the trained epoch (the scores so far, checkpoint regardless of
        ``save_interval``) so a restart goes on with the next epoch; the caller re-raises the error."""
        try:
            self._finish_epoch(epoch, errors)
            prefix = self.save_model(epoch)
        except Exception:  # the scoring error is the one to report; this one is logged
            logger.exception(f"epoch {epoch}: scoring dev/eval failed, and saving the trained epoch failed too")
            return
        logger.error(f"epoch {epoch}: scoring dev/eval failed; the trained epoch is saved as {prefix} "
                     f"(without dev/eval scores), a restart continues with epoch {epoch + 1}")

    def _run_train_epoch(self, epoch: int, dataset: Dataset, train_step, *,
                         learning_rate: float | None = None) -> ScoreAccumulator:
        accumulator = ScoreAccumulator()
        reporter = StepReporter(f"ep {epoch} train", expected_steps=self._steps_last_epoch)
        stop_on_nonfinite = self.config.bool("stop_on_nonfinite_train_score", True)
        dynamic_lr = self.config.typed_value("dynamic_learning_rate")
        if dynamic_lr is not None and not callable(dynamic_lr):
            raise ConfigError(f'config key "dynamic_learning_rate": expected a function '
                              f"(*, global_train_step, epoch, learning_rate, **kwargs) -> float, got {dynamic_lr!r}")
        with self._batches(dataset, epoch, train=True) as batches:
            for batch in batches:
                step_start = time.monotonic()
                if dynamic_lr is not None:
                    self.updater.set_learning_rate(float(dynamic_lr(
                        global_train_step=int(self.updater.global_train_step.numpy()), epoch=epoch,
                        learning_rate=learning_rate if learning_rate is not None else float(self.updater.learning_rate.numpy()))))
                losses, total, grad_norm = train_step(self.network.feed(batch, with_targets=True))
                step_scores = accumulator.add(losses)
                total = float(total)
                if stop_on_nonfinite and not math.isfinite(total):
                    raise NonFiniteScoreError(
                        f"epoch {epoch}, step {reporter.steps}: the training loss is {total} "
                        f"({format_scores(step_scores)}); stopped (stop_on_nonfinite_train_score). The last "
                        f"complete checkpoint is kept; lower learning_rate or set gradient_clip_global_norm")
                reporter.step(step_scores, num_seqs=batch.num_seqs, num_frames=batch.num_frames(),
                              step_time=time.monotonic() - step_start, extra=self._step_log_extra(batch))
                self._write_step_summary(step_scores, float(grad_norm))
        reporter.finish()
        self._steps_last_epoch = reporter.steps
        if not accumulator.sums:
            raise ConfigError(f"epoch {epoch}: the train dataset gave no batch (check batch_size, max_seq_length)")
        return accumulator

    def _step_log_extra(self, batch) -> dict[str, str]:
        """More of the step log line: ``log_batch_size`` (longest sequence per data key) and
        ``tf_log_memory_usage`` (peak memory of each GPU)."""
        extra = {}
        if self.config.bool("log_batch_size", False):
            for key, lens in sorted(batch.seq_lens.items()):
                extra[f"max_size:{key}"] = str(int(lens.max(initial=0)))
        if self.config.bool("tf_log_memory_usage", False):
            gpus = tf.config.list_logical_devices("GPU")
            if not gpus and not self._memory_note_done:
                logger.info("tf_log_memory_usage: no GPU here, and TensorFlow reports no CPU memory use; not logged")
            self._memory_note_done = True
            for device in gpus:
                peak = tf.config.experimental.get_memory_info(device.name)["peak"]
                extra[f"mem_usage:{device.name.split(':', 1)[-1]}"] = f"{peak / 2 ** 20:.1f}MB"
        return extra

    def _cleanup_old_models(self, num_epochs: int) -> None:
        options = cleanup_options(self.config.typed_value("cleanup_old_models"))
        if options is None or not self.is_chief:
            return
        model = self.model_prefix()
        scores = {e: self.lr_control.get_epoch_error_key_value(e)[1] for e in ckpt.existing_epochs(model)}
        for epoch in epochs_to_delete(ckpt.existing_epochs(model), scores, options, final_epoch=num_epochs):
            ckpt.remove_checkpoint(ckpt.epoch_checkpoint_prefix(model, epoch))
            logger.log(DETAIL, f"cleanup_old_models: deleted model of epoch {epoch}")

    # ---- evaluation ----------------------------------------------------------------------------

    def eval_dataset(self, dataset: Dataset, epoch: int) -> ScoreAccumulator:
        """Scores of every loss over one pass of ``dataset`` (no dropout, no chunking)."""
        if self._eval_step is None:
            self._eval_step = make_eval_step(self.network)
        step = self._eval_step
        accumulator = ScoreAccumulator()
        with self._batches(dataset, epoch, train=False) as batches:
            for batch in batches:
                accumulator.add(step(self.network.feed(batch, with_targets=True)))
        warn_on_retrace(step, "eval")
        return accumulator



_LAST_BEST_KEYS = ("modulo", "filter_score", "only_last_n", "min_score_dist")


def last_best_model_options(config) -> dict | None:
    """``use_last_best_model`` (True or a dict of ``modulo``, ``filter_score``, ``only_last_n``,
    ``min_score_dist``) as a dict; None when it is off."""
    value = config.typed_value("use_last_best_model")
    if value is None or value is False:
        return None
    if value is True:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f'config key "use_last_best_model": expected True or a dict with keys '
                          f"{', '.join(_LAST_BEST_KEYS)}, got {value!r}")
    unknown = sorted(set(value) - set(_LAST_BEST_KEYS))
    if unknown:
        raise ConfigError(f'config key "use_last_best_model": unknown key {unknown[0]!r}; known: '
                          f"{', '.join(_LAST_BEST_KEYS)}")
    if not isinstance(value.get("modulo", 1), int) or value.get("modulo", 1) < 1:
        raise ConfigError(f'config key "use_last_best_model": "modulo" must be an int >= 1, got {value["modulo"]!r}')
    return dict(value)
