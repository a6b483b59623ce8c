"""The top-level config keys the framework reads, and a warning for near misses of them.

Which keys are "known" comes from two sources, and both are needed:

- ``FRAMEWORK_KEYS``, a static list. Most keys are read lazily (``save_interval`` after the first epoch,
  ``search_output_file`` only by task search), so at start-up no run has asked for them yet: only a
  static list can tell ``num_epoch`` from a helper variable before the run does real work. A test
  (``tests/test_config_keys.py``) scans ``returnn/`` for every ``config.<getter>("key")`` literal and
  fails when one is missing here, so the list cannot silently drift from the code.
- ``Config.read_keys``, every key a getter was asked for so far, plus ``register_config_keys`` for
  keys that code outside ``returnn/`` (a registered task, dataset or layer) reads.

RETURNN keys that this framework accepts but does not use are listed too (``RETURNN_KEYS``), so that
they are not "corrected" to a key that happens to be spelt alike.

Only near misses are reported: an unknown key whose closest known key is at least ``NEAR_MISS_CUTOFF``
similar (difflib ratio). A Python config's own helpers (``n_symbols``, ``demo_name``, imported
modules, functions, classes) are not near misses of anything, or are skipped by their type.
"""

from __future__ import annotations

import inspect
import types
from typing import Any, Iterable

from returnn.log import logger
from returnn.util.suggest import closest_name

NEAR_MISS_CUTOFF = 0.8

FRAMEWORK_KEYS = frozenset("""
    task backend behavior_version use_tensorflow use_theano use_pytorch use_torch debug log log_verbosity
    extern_data num_inputs num_outputs sparse_input network random_seed
    train dev eval eval_datasets forward_data search_data
    batch_size max_seqs max_seq_length chunking min_chunk_size batching window shuffle_batches
    forward_batch_size search_batch_size
    model load load_epoch import_model_train_epoch1 preload_from_files num_epochs save_interval cleanup_old_models
    learning_rate learning_rates learning_rate_file learning_rate_control min_learning_rate
    learning_rate_control_error_measure learning_rate_control_min_num_epochs_per_new_lr
    learning_rate_control_relative_error_relative_lr learning_rate_decay learning_rate_growth
    newbob_learning_rate_decay newbob_learning_rate_growth newbob_error_threshold newbob_relative_error_threshold
    newbob_relative_error_div_by_old newbob_multi_num_epochs newbob_multi_update_interval
    dynamic_learning_rate use_last_best_model pretrain pretrain_repetitions
    optimizer optimizer_epsilon adam nadam adagrad adadelta rmsprop momentum weight_decay
    gradient_clip gradient_clip_global_norm gradient_noise accum_grad_multiple_step
    stop_on_nonfinite_train_score jit_compile optimize_move_layers_out debug_print_layer_output_template
    log_batch_size tensorboard tensorboard_step_interval tf_log_dir tf_log_memory_usage
    output_file forward_output_layer forward_use_search
    hidden_size hidden_type hidden_name activation bidirectional dropout L1_reg L2_reg loss truncation
    distributed use_horovod
    search_do_eval search_output_file search_output_file_format search_output_layer search_output_bpe_join
    export_dir
""".split())

RETURNN_KEYS = frozenset("""
    device tf_session_opts multiprocessing update_on_device cache_size start_epoch start_batch stop
    use_tensorflow_native_lstm calculate_exp_loss
    max_seq_length_default_target
""".split())

_registered: set[str] = set()


def register_config_keys(keys: Iterable[str]) -> None:
    """Declare keys that code outside the framework reads, so that they are never flagged."""
    _registered.update(keys)


def known_keys(config: Any) -> set[str]:
    """All keys that count as known for ``config``: static lists, registered ones, and those read so far."""
    return set(FRAMEWORK_KEYS | RETURNN_KEYS) | _registered | set(getattr(config, "read_keys", ()))


def near_miss_keys(config: Any) -> dict[str, str]:
    """``{unknown key: known key it is probably a typo of}`` for the keys set in ``config``."""
    known = known_keys(config)
    misses = {}
    for key in config.keys():
        if key in known or key.startswith("_") or _is_helper(config.typed_value(key)):
            continue
        close = closest_name(key, known, cutoff=NEAR_MISS_CUTOFF)
        if close is not None:
            misses[key] = close
    return misses


def warn_near_miss_keys(config: Any) -> None:
    """One warning per unknown key that looks like a typo of a known one; the run goes on."""
    for key, close in near_miss_keys(config).items():
        logger.warning(f'config key "{key}" (from {config.origin(key)}) is not read by this framework and is ignored; '
                       f"did you mean {close!r}?")


def _is_helper(value: Any) -> bool:
    """Modules, functions and classes in a Python config are its own helpers, not settings."""
    return isinstance(value, types.ModuleType) or inspect.isroutine(value) or inspect.isclass(value)
