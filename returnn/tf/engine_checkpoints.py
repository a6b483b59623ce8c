"""The checkpoint side of the ``Engine``: what a checkpoint holds, saving, loading (ours and RETURNN's),
``preload_from_files``, and which checkpoint a task or a resumed training loads."""

from __future__ import annotations

import tensorflow as tf

from returnn.errors import ConfigError
from returnn.log import DETAIL, logger
from returnn.tf import checkpoint as ckpt
from returnn.tf.checkpoint_returnn import RETURNN_STEP_VAR


class EngineCheckpoints:
    """Mixin of ``Engine``: uses its ``config``, ``network``, ``updater``, ``model``, ``is_chief``."""

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
        """Write ``model.NNN`` atomically (only the chief of a multi-worker cluster writes); returns its prefix."""
        prefix = ckpt.epoch_checkpoint_prefix(self.model_prefix(), epoch)
        if not self.is_chief:
            return prefix
        ckpt.save_checkpoint(prefix, self.checkpoint_variables())
        logger.log(DETAIL, f"Saved model {prefix}")
        return prefix

    def load_model(self, prefix: str, *, params_only: bool = False) -> None:
        """Load a checkpoint (params only, or with the updater state when training).

        A RETURNN checkpoint gives the params (names mapped) and the train step; the optimizer state starts fresh.
        """
        if ckpt.is_returnn_checkpoint_file(prefix):
            ckpt.load_checkpoint(prefix, self.network.get_params())
            logger.info(f"Loaded model {prefix} (written by RETURNN: variable names and layouts mapped)")
            if not params_only and self.updater is not None:
                step = ckpt.read_checkpoint(prefix).get(RETURNN_STEP_VAR, 0)
                self.updater.global_train_step.assign(int(step))
                logger.info(f"Continuing from a RETURNN checkpoint at train step {int(step)}: the optimizer state "
                            "starts fresh (RETURNN's is not carried over)")
            return
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

    def load_for_inference(self, *, allow_fresh: bool = False) -> int:
        """Load ``load`` (a checkpoint path), else epoch ``load_epoch``, else the newest ``model.NNN``; returns the epoch.

        ``allow_fresh`` (task forward): with no ``load``, no ``load_epoch`` and no checkpoint on disk, the params stay
        freshly initialized (from ``random_seed``), with a warning, as in RETURNN; returns 0.
        """
        config = self.config
        if config.value("load"):
            self.load_model(config.value("load"), params_only=True)
            return config.int("load_epoch", 1)
        if allow_fresh and not config.has("load_epoch") and not (self.model and ckpt.existing_epochs(self.model)):
            where = f'no complete checkpoint "{self.model}.NNN" on disk' if self.model else 'no "model" set'
            logger.warning(f'no model to load ("load" not set, {where}): running with freshly initialized params '
                           f'(random_seed {config.int("random_seed", 42)})')
            return 0
        model = self.model_prefix()
        epochs = ckpt.existing_epochs(model)
        epoch = config.int("load_epoch", epochs[-1] if epochs else 0)
        if not epoch or epoch not in epochs:
            raise ConfigError(f'no model to load: "model" is {model!r} and the complete checkpoints on disk are for '
                              f"epochs {epochs or 'none'}" + (f"; load_epoch {epoch} is not among them" if epoch else ""))
        self.load_model(ckpt.epoch_checkpoint_prefix(model, epoch), params_only=True)
        return epoch

    def _load_newest_readable_checkpoint(self, model: str, epochs: list[int]) -> int:
        """Load the newest checkpoint of ``epochs`` that reads; a damaged one (truncated data file) is skipped
        with a warning, and training redoes its epoch. Returns the loaded epoch."""
        damaged: list[str] = []
        for epoch in reversed(epochs):
            if damaged:
                self.use_net_dict(self.net_dict_for_epoch(epoch))  # pretraining: that epoch's network
            try:
                self.load_model(ckpt.epoch_checkpoint_prefix(model, epoch))
                return epoch
            except ckpt.CheckpointDamagedError as exc:
                logger.warning(f"{exc}; falling back to the previous checkpoint (training redoes epoch {epoch})")
                damaged.append(str(exc))
        raise ckpt.CheckpointDamagedError(
            f"no checkpoint of model {model!r} can be read (epochs {', '.join(map(str, epochs))} all damaged); the "
            f"newest: {damaged[0]}. Delete them to train from scratch")
