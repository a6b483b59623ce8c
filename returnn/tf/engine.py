"""The ``Engine``: builds the network once from the config and runs training epochs, evaluation and forwarding.

Training state lives in two files per run: checkpoints ``model.NNN`` (params, optimizer state, step
counter; see ``returnn.tf.checkpoint``) and the ``learning_rate_file`` (learning rates and scores per
epoch). After each epoch the learning-rate file is written first, then the checkpoint; a restart resumes
after the newest complete checkpoint and forgets scores of epochs that have none.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np
import tensorflow as tf

from returnn.datasets import Dataset, batch_generator_from_config
from returnn.datasets.base import init_dataset_from_config
from returnn.errors import ConfigError, ReturnnError
from returnn.log import DETAIL, logger
from returnn.lr_control import LearningRateControl, learning_rate_control_from_config
from returnn.tf import checkpoint as ckpt
from returnn.tf.model_cleanup import cleanup_options, epochs_to_delete
from returnn.tf.network import Network
from returnn.tf.legacy_network import net_dict_from_config
from returnn.tf.pretrain import pretrain_from_config
from returnn.tf.summaries import ScalarWriter
from returnn.tf.steps import ScoreAccumulator, make_eval_step, make_train_step, warn_on_retrace
from returnn.tf.updater import Updater
from returnn.util.progress import StepReporter, format_scores


class NonFiniteScoreError(ReturnnError, FloatingPointError):
    """A training step gave a NaN or Inf loss (``stop_on_nonfinite_train_score``)."""


def check_dataset_matches_extern_data(dataset: Dataset, extern_data, key: str) -> None:
    """Each extern data key the dataset provides must agree in dim and sparsity; a clear error names both."""
    for data_key in dataset.get_data_keys():
        if data_key not in extern_data:
            continue
        template = extern_data[data_key]
        want_dim = template.sparse_dim.size if template.sparse else template.dim
        have_dim, have_sparse = dataset.get_data_dim(data_key), dataset.is_data_sparse(data_key)
        if have_sparse != template.sparse or (want_dim is not None and have_dim != want_dim):
            raise ConfigError(
                f'config key "{key}": data key {data_key!r} has dim {have_dim} ({"sparse" if have_sparse else "dense"}), '
                f'but extern_data (or num_inputs/num_outputs) says dim {want_dim} ({"sparse" if template.sparse else "dense"})')


class Engine:
    """One network built from ``config["network"]``; tasks call ``train``, ``eval_model`` or ``forward_to_hdf``."""

    def __init__(self, config, *, search: bool = False, output_layer: str | None = None):
        self.config = config
        tf.random.set_seed(config.int("random_seed", 42))
        # search: choice layers search, no losses; output_layer: what a task outputs is built too
        self.network = Network.from_config(config, search=search, also_build=[output_layer] if output_layer else [])
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

    # ---- datasets --------------------------------------------------------------------------

    def dataset(self, key: str, *, train: bool = False) -> Dataset | None:
        """The dataset of config key ``key`` (train, dev, eval, ...) with the config-wide defaults, or None.

        Its data keys are checked against ``extern_data``, so a dim mismatch is named before any step runs.
        """
        try:
            dataset = init_dataset_from_config(self.config, key, train=train)
        except ReturnnError as exc:
            raise type(exc)(f'config key "{key}": {exc}') from exc
        if dataset is not None:
            check_dataset_matches_extern_data(dataset, self.network.extern_data, key)
        return dataset

    def _batches(self, dataset: Dataset, epoch: int, *, train: bool):
        return batch_generator_from_config(dataset, self.config, epoch=epoch, train=train)

    # ---- variables and checkpoints ----------------------------------------------------------

    def checkpoint_variables(self) -> dict[str, tf.Variable]:
        """Everything a checkpoint holds: params by name, and the updater's state under ``updater/``."""
        variables = dict(self.network.get_params())
        if self.updater is not None:
            opt = self.updater.optimizer
            variables["updater/global_train_step"] = self.updater.global_train_step
            variables["updater/learning_rate"] = self.updater.learning_rate
            variables["updater/optimizer/iterations"] = opt.iterations
            for key, slots in opt.slots.items():
                for slot, var in slots.items():
                    variables[f"updater/optimizer/{key}/{slot}"] = var
            for var_name, acc in zip(opt.slot_keys, self.updater.accumulators):
                variables[f"updater/accum/{var_name}"] = acc
        return variables

    def save_model(self, epoch: int) -> str:
        """Write ``model.NNN`` atomically; returns its prefix."""
        prefix = ckpt.epoch_checkpoint_prefix(self.model_prefix(), epoch)
        ckpt.save_checkpoint(prefix, self.checkpoint_variables())
        logger.log(DETAIL, f"Saved model {prefix}")
        return prefix

    def load_model(self, prefix: str, *, params_only: bool = False) -> None:
        """Load a checkpoint (params only, or with the updater state when training)."""
        variables = self.network.get_params() if params_only else self.checkpoint_variables()
        ckpt.load_checkpoint(prefix, variables, ignore_missing=False)
        logger.info(f"Loaded model {prefix}")

    def model_prefix(self) -> str:
        """The config's ``model`` (checkpoint path prefix); a clear error when it is missing."""
        if not self.model:
            raise ConfigError('config key "model" is missing: it is the path prefix of the checkpoints (model.NNN)')
        return self.model

    def _preload_from_files(self) -> None:
        """``preload_from_files``: init params from other models by name, optionally with a prefix."""
        spec = self.config.typed_value("preload_from_files") or {}
        if not isinstance(spec, dict):
            raise ConfigError(f'config key "preload_from_files": expected a dict of {{name: {{"filename": ...}}}}, got {spec!r}')
        params = self.network.get_params()
        for name, opts in spec.items():
            if not isinstance(opts, dict) or "filename" not in opts:
                raise ConfigError(f'config key "preload_from_files": entry {name!r} needs a "filename"')
            prefix = opts.get("prefix", "")
            chosen = {k: v for k, v in params.items() if k.startswith(prefix)} if prefix else params
            mapping = {k: k[len(prefix):] for k in chosen}
            loaded = ckpt.load_checkpoint(opts["filename"], chosen, name_map=mapping,
                                          ignore_missing=bool(opts.get("ignore_missing", False)))
            logger.info(f"preload_from_files {name!r}: {len(loaded)} params from {opts['filename']}")

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
        self.network = Network(net_dict, extern_data=self.network.extern_data, random_seed=self.config.int("random_seed", 42),
                               options=self.network.options)
        new_params = self.network.get_params()
        copied = {n: v for n, v in old_params.items() if n in new_params and tuple(new_params[n].shape) == v.shape}
        self.network.load_params(copied, ignore_missing=True)
        self._eval_step = None
        if self.updater is not None:
            old = self.updater
            self.updater = Updater(self.config, list(self.network.trainable_variables))
            self.updater.global_train_step.assign(old.global_train_step)
            self.updater.learning_rate.assign(old.learning_rate)
        logger.info(f"Network now has layers {', '.join(self.network.layers)} ({len(copied)} params carried over)")
        return True

    # ---- training ----------------------------------------------------------------------------

    def init_train(self) -> int:
        """Create the updater and learning-rate control, restore the newest checkpoint; returns the first epoch to run."""
        self.lr_control = learning_rate_control_from_config(self.config)
        model = self.model_prefix()
        ckpt.remove_stale_temp_files(model)
        epochs = ckpt.existing_epochs(model)
        self.use_net_dict(self.net_dict_for_epoch(epochs[-1] if epochs else 1))
        self.updater = Updater(self.config, list(self.network.trainable_variables))
        if epochs:
            self.load_model(ckpt.epoch_checkpoint_prefix(model, epochs[-1]))
            self.epoch = epochs[-1]
        elif self.config.value("load"):
            self.load_model(self.config.value("load"), params_only=True)
        else:
            if self.config.value("import_model_train_epoch1"):
                self.load_model(self.config.value("import_model_train_epoch1"), params_only=True)
            self._preload_from_files()
        for epoch, data in self.lr_control.epoch_data.items():
            if epoch > self.epoch:
                data.error.clear()  # scores of epochs whose checkpoint was never completed
        return self.epoch + 1

    def train(self) -> None:
        """Epochs ``1 .. num_epochs`` of ``train``, scoring ``dev`` and ``eval`` after each; resumes after a restart."""
        train_data = self.dataset("train", train=True)
        if train_data is None:
            raise ConfigError('config key "train" is missing: task train needs a training dataset')
        eval_sets = {key: ds for key in ("dev", "eval") if (ds := self.dataset(key)) is not None}
        num_epochs = self.config.int("num_epochs", 5)
        start_epoch = self.init_train()
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
                train_step = make_train_step(self.network, self.updater,
                                                        jit_compile=self.config.bool("jit_compile", False))
            if last_best is not None:
                self._maybe_use_last_best_model(epoch, last_best)
            self._train_epoch(epoch, train_data, eval_sets, train_step, num_epochs)
        warn_on_retrace(train_step, "train")

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
        scores = self._run_train_epoch(epoch, train_data, train_step, learning_rate=learning_rate)
        errors = scores.epoch_error_dict("train")
        summary = [f"train: {format_scores(_flat(errors))}"]
        for key, dataset in eval_sets.items():
            dataset_scores = self.eval_dataset(dataset, epoch)
            errors.update(dataset_scores.epoch_error_dict(key))
            summary.append(f"{key}: {format_scores(_flat(dataset_scores.epoch_error_dict(key)))}")
        self.lr_control.set_epoch_error(epoch, errors)
        self.lr_control.save()
        if epoch % self.config.int("save_interval", 1) == 0 or epoch == num_epochs:
            self.save_model(epoch)
            self._cleanup_old_models(num_epochs)
        self._write_epoch_summary(epoch, learning_rate, errors)
        logger.info(f"epoch {epoch} lr {learning_rate:.4g} {'; '.join(summary)}; {time.monotonic() - start:.1f} sec")

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
        if options is None:
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

    # ---- TensorBoard -----------------------------------------------------------------------------

    def _writer(self) -> ScalarWriter | None:
        if self._summary_writer is None and self.model and self.config.bool("tensorboard", True):
            log_dir = self.config.value("tf_log_dir") or os.path.join(os.path.dirname(os.path.abspath(self.model)), "tensorboard")
            self._summary_writer = ScalarWriter(log_dir)
        return self._summary_writer

    def _write_step_summary(self, step_scores: dict[str, float], grad_norm: float) -> None:
        writer = self._writer()
        step = int(self.updater.global_train_step.numpy())
        if writer is not None and step % self.config.int("tensorboard_step_interval", 10) == 0:
            values = {f"train/{name}": value for name, value in step_scores.items()}
            values["train/grad_norm"] = grad_norm
            values["train/learning_rate"] = float(self.updater.learning_rate.numpy())
            writer.write(step, values)

    def _write_epoch_summary(self, epoch: int, learning_rate: float, errors: dict) -> None:
        writer = self._writer()
        if writer is not None:
            values = {"epoch/learning_rate": learning_rate}
            values.update({f"epoch/{name}": value for name, value in _flat(errors).items()})
            writer.write(epoch, values)
            writer.flush()


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


def _flat(errors: dict) -> dict[str, float]:
    """``{"dev_score": {"cost:output": 1.0}}`` -> ``{"dev_score_output": 1.0}`` for summaries."""
    flat = {}
    for key, values in errors.items():
        for sub_key, value in values.items():
            flat[f"{key}_{sub_key.split(':', 1)[-1]}" if len(values) > 1 else key] = float(np.float64(value))
    return flat
