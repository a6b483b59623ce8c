"""Losses by RETURNN's names (``ce``, ``mse``, ``l1``, ``ctc``, ``binary_ce``, ``as_is``, ``edit_distance``) and
their error rates.

A loss compares a layer's output with its target over the valid frames only (masked by sequence
lengths), so padding never changes it. Scores are reported per frame; training minimizes the sum over the
frames of the batch, as RETURNN does (``use_normalized_loss: True``: the per-frame mean).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Mapping

import tensorflow as tf

from returnn.errors import LayerConfigError
from returnn.tensor.data import Data
from returnn.tf.layers.opts import LayerOpts, did_you_mean

_EPS = 1e-7


@dataclasses.dataclass
class LossValue:
    """One loss on one batch: ``loss`` (per frame: the score reported), ``error`` (or None), ``num_frames`` (the
    normalization count, to average scores over batches) and ``objective`` (what training minimizes: the sum
    over frames, as RETURNN does, or with ``use_normalized_loss`` the per-frame loss; None: ``loss``)."""

    loss: Any
    error: Any
    num_frames: Any
    objective: Any = None

    @property
    def to_minimize(self) -> Any:
        return self.loss if self.objective is None else self.objective

    @property
    def per_frame_objective(self) -> bool:
        """Whether training minimizes the per-frame loss (a mean over ``num_frames``) rather than a sum."""
        return self.objective is None or self.objective is self.loss


@dataclasses.dataclass
class LossEntry:
    """A loss of a network or of a nested one, with its ``loss_scale``: the outputs key of its layer (a path
    such as ``dec/prob``) and of a ``layer:`` target."""

    loss: Loss
    scale: float
    output_key: str
    target_layer_key: str | None = None


LOSSES: dict[str, type[Loss]] = {}


def register_loss(name: str, *, aliases: tuple[str, ...] = ()) -> Any:
    """Class decorator: make a loss available as ``"loss": name``."""

    def decorate(cls: type[Loss]) -> type[Loss]:
        for key in (name, *aliases):
            LOSSES[key] = cls
        cls.loss_name = name
        return cls

    return decorate


def get_loss_class(name: str, *, where: str) -> type[Loss]:
    """The loss class for ``"loss": name``; unknown names suggest close ones."""
    if name not in LOSSES:
        raise LayerConfigError(f'{where}: "loss": unknown loss {name!r}{did_you_mean(name, LOSSES)}; '
                               f"known: {', '.join(sorted(LOSSES))}")
    return LOSSES[name]


class Loss:
    """Base of losses: ``Opts`` are the accepted ``loss_opts``; ``__call__(output, target) -> LossValue``."""

    loss_name: ClassVar[str] = ""
    needs_target: ClassVar[bool] = True

    class Opts(LayerOpts):
        use_normalized_loss: bool = False

    def __init__(self, opts: Any, *, output: Data, target: Data | None, target_name: str, where: str):
        """``output`` / ``target`` are the templates, to check shapes before any TF op; ``where`` names the layer."""
        self.opts = opts
        self.target_name = target_name

    def value(self, total: Any, error: Any, num_frames: Any) -> LossValue:
        """The loss summed over ``num_frames`` frames as a LossValue: reported per frame; minimized as the sum
        (RETURNN's default) or per frame (``use_normalized_loss: True``)."""
        per_frame = total / tf.maximum(tf.cast(num_frames, total.dtype), 1.0)
        return LossValue(per_frame, error, num_frames, per_frame if self.opts.use_normalized_loss else total)


def _batch_time_major(data: Data) -> Data:
    """Batch axis first, time axis (if any) second."""
    data = data.copy_as_batch_major()
    return data if data.time_dim is None else data.copy_move_axis(data.time_dim_axis, 1)


def frame_mask(data: Data) -> Any:
    """[B, T] mask of valid frames of ``data`` (its time dim), or None without a time axis."""
    data = _batch_time_major(data)
    return None if data.time_dim is None else data.sequence_mask()


def valid_frames(data: Data, mask: Any = None) -> tuple[Any, Any]:
    """(values of valid frames [N, ...], N) flattened over batch and time; ``mask`` defaults to data's own."""
    data = _batch_time_major(data)
    if data.time_dim is None:
        return data.tensor, tf.shape(data.tensor)[0]
    mask = data.sequence_mask() if mask is None else mask
    return tf.boolean_mask(data.tensor, mask), tf.reduce_sum(tf.cast(mask, tf.int32))


def frame_log_probs(output: Data) -> Any:
    """log-probabilities of the valid frames [N, classes]: from the logits when known, else log of clipped probs."""
    output = output.copy_with_feature_last()
    if output.logits is not None:
        logits, _ = valid_frames(output.replace(tensor=output.logits))
        return tf.nn.log_softmax(logits)
    probs, _ = valid_frames(output)
    return tf.math.log(tf.clip_by_value(probs, _EPS, 1.0))


class FramewiseLoss(Loss):
    """A loss over aligned frames: output and target share their frames (time dims of equal lengths)."""

    def __init__(self, opts: Any, *, output: Data, target: Data | None, target_name: str, where: str):
        super().__init__(opts, output=output, target=target, target_name=target_name, where=where)
        if (output.time_dim is None) != (target.time_dim is None):
            raise LayerConfigError(f"{where}: output {output.describe()} and target {target.describe()} must both "
                                   f"have a time axis or both have none")
        out_dim = output.dim
        target_dim = target.dim
        if out_dim is not None and target_dim is not None and out_dim != target_dim:
            raise LayerConfigError(f"{where}: output dim {out_dim} ({output.describe()}) does not match target dim "
                                   f"{target_dim} ({target.describe()})")

    def target_frames(self, output: Data, target: Data) -> Any:
        """Target values at the output's valid frames (dense targets with the feature axis last)."""
        frames, _ = valid_frames(target.copy_with_feature_last(), frame_mask(output))
        return frames

    def dense_target_frames(self, output: Data, target: Data) -> Any:
        """Target frames as float [N, dim]: one-hot for sparse targets."""
        frames = self.target_frames(output, target)
        if target.sparse:
            return tf.one_hot(frames, output.dim, dtype=output.dtype)
        return tf.cast(frames, output.dtype)


def classification_error(log_probs_or_out: Any, target_frames: Any, *, sparse: bool) -> Any:
    """Fraction of frames whose argmax differs from the target (argmax of dense targets)."""
    labels = target_frames if sparse else tf.argmax(target_frames, axis=-1, output_type=tf.int32)
    predicted = tf.argmax(log_probs_or_out, axis=-1, output_type=tf.int32)
    wrong = tf.cast(tf.not_equal(predicted, tf.cast(labels, tf.int32)), tf.float32)
    return tf.reduce_sum(wrong) / tf.maximum(tf.cast(tf.size(wrong), tf.float32), 1.0)


def make_loss(name: str, loss_opts: Mapping[str, Any], *, output: Data, target: Data | None, target_name: str,
              where: str) -> Loss:
    """The loss ``name`` for a layer, its ``loss_opts`` checked."""
    cls = get_loss_class(name, where=where)
    opts = cls.Opts.from_dict(loss_opts, where=f'{where}: "loss_opts"') if loss_opts is not None else cls.Opts()
    return cls(opts, output=output, target=target, target_name=target_name, where=where)


@register_loss("ce", aliases=("cross_entropy",))
class CrossEntropyLoss(FramewiseLoss):
    """Cross entropy of a softmax output with sparse (class index) or dense (distribution) targets."""

    class Opts(Loss.Opts):
        label_smoothing: float = 0.0
        use_fused: bool = True  # RETURNN's choice of TF op for the same value; accepted, no effect here

    def __call__(self, output: Data, target: Data) -> LossValue:
        log_probs = frame_log_probs(output)
        smoothing = self.opts.label_smoothing
        if target.sparse:
            labels = tf.cast(self.target_frames(output, target), tf.int32)
            label_log_probs = tf.gather(log_probs, labels, axis=-1, batch_dims=1)
            per_frame = -(1.0 - smoothing) * label_log_probs
            if smoothing:
                per_frame -= smoothing / output.dim * tf.reduce_sum(log_probs, axis=-1)
            error = classification_error(log_probs, labels, sparse=True)
        else:
            targets = self.dense_target_frames(output, target)
            if smoothing:
                targets = targets * (1.0 - smoothing) + smoothing / output.dim
            per_frame = -tf.reduce_sum(targets * log_probs, axis=-1)
            error = classification_error(log_probs, targets, sparse=False)
        num_frames = tf.shape(per_frame)[0]
        return self.value(tf.reduce_sum(per_frame), error, num_frames)


class _DistanceLoss(FramewiseLoss):
    """Sum over features of a distance between output and target, per frame."""

    def distance(self, diff: Any) -> Any:
        """Elementwise distance of ``output - target``."""
        return tf.square(diff)

    def __call__(self, output: Data, target: Data) -> LossValue:
        out_frames, num_frames = valid_frames(output.copy_with_feature_last())
        diff = out_frames - self.dense_target_frames(output, target)
        total = tf.reduce_sum(self.distance(diff))
        return self.value(total, None, num_frames)


@register_loss("mse")
class MeanSquaredErrorLoss(_DistanceLoss):
    """Squared error summed over features, normalized per frame."""


@register_loss("l1")
class L1Loss(_DistanceLoss):
    """Absolute error summed over features, normalized per frame."""

    def distance(self, diff: Any) -> Any:
        """|output - target|."""
        return tf.abs(diff)


@register_loss("binary_ce")
class BinaryCrossEntropyLoss(FramewiseLoss):
    """Binary cross entropy of sigmoid outputs (probabilities) with 0/1 targets of the same shape."""

    def __call__(self, output: Data, target: Data) -> LossValue:
        probs, num_frames = valid_frames(output.copy_with_feature_last())
        probs = tf.clip_by_value(probs, _EPS, 1.0 - _EPS)
        targets = tf.cast(self.target_frames(output, target), probs.dtype)
        total = -tf.reduce_sum(targets * tf.math.log(probs) + (1.0 - targets) * tf.math.log(1.0 - probs))
        wrong = tf.cast(tf.not_equal(probs > 0.5, targets > 0.5), tf.float32)
        error = tf.reduce_sum(wrong) / tf.maximum(tf.cast(tf.size(wrong), tf.float32), 1.0)
        return self.value(total, error, num_frames)


@register_loss("as_is")
class AsIsLoss(Loss):
    """The layer output itself is the loss: summed over valid frames and features, normalized per frame."""

    needs_target = False

    def __call__(self, output: Data, target: Data | None) -> LossValue:
        frames, num_frames = valid_frames(output)
        return self.value(tf.reduce_sum(tf.cast(frames, tf.float32)), None, num_frames)


@register_loss("ctc")
class CtcLoss(Loss):
    """CTC of a softmax output over labels plus blank (the last class) with a sparse label sequence target.

    Normalized by the number of target labels; the error is the label error rate of greedy decoding.
    """

    def __init__(self, opts: Any, *, output: Data, target: Data | None, target_name: str, where: str):
        super().__init__(opts, output=output, target=target, target_name=target_name, where=where)
        if not target.sparse or target.time_dim is None or output.time_dim is None or output.sparse:
            raise LayerConfigError(f"{where}: ctc needs a dense output with a time axis and a sparse label sequence "
                                   f"target; got output {output.describe()}, target {target.describe()}")
        if output.dim is not None and target.dim is not None and output.dim != target.dim + 1:
            raise LayerConfigError(f"{where}: ctc output dim must be target dim + 1 (blank last): output "
                                   f"{output.describe()}, target {target.describe()}")

    def __call__(self, output: Data, target: Data) -> LossValue:
        out = _batch_time_major(output.copy_with_feature_last())
        if out.logits is not None:
            logits = out.logits
        else:
            logits = tf.math.log(tf.clip_by_value(out.tensor, _EPS, 1.0))
        logit_lens = out.get_dyn_size(out.time_dim)
        labels = _batch_time_major(target)
        label_lens = labels.get_dyn_size(labels.time_dim)
        label_mask = tf.sequence_mask(label_lens, maxlen=tf.shape(labels.tensor)[1])
        label_ids = tf.where(label_mask, tf.cast(labels.tensor, tf.int32), 0)
        seq_losses = tf.nn.ctc_loss(labels=label_ids, logits=tf.transpose(logits, [1, 0, 2]), label_length=label_lens,
                                    logit_length=logit_lens, logits_time_major=True, blank_index=-1)
        num_labels = tf.reduce_sum(label_lens)
        error = self._greedy_error(logits, logit_lens, label_ids, label_lens, num_labels)
        return self.value(tf.reduce_sum(seq_losses), error, num_labels)

    @staticmethod
    def _greedy_error(logits: Any, logit_lens: Any, labels: Any, label_lens: Any, num_labels: Any) -> Any:
        """Edit distance of the greedy (best path) decoding to the labels, per target label."""
        decoded, _ = tf.nn.ctc_greedy_decoder(tf.transpose(logits, [1, 0, 2]), logit_lens, merge_repeated=True,
                                              blank_index=-1)
        hyp = tf.cast(decoded[0], tf.int32)
        distance = tf.edit_distance(hyp, sparse_label_seqs(labels, label_lens), normalize=False)
        return tf.reduce_sum(distance) / tf.maximum(tf.cast(num_labels, tf.float32), 1.0)


def sparse_label_seqs(labels: Any, lens: Any) -> tf.SparseTensor:
    """Padded label sequences [B, T] (int) as a SparseTensor of each sequence's first ``lens`` labels."""
    mask = tf.sequence_mask(lens, maxlen=tf.shape(labels)[1])
    indices = tf.where(mask)
    return tf.SparseTensor(indices, tf.gather_nd(tf.cast(labels, tf.int32), indices),
                           tf.cast(tf.shape(labels), tf.int64))


@register_loss("edit_distance")
class EditDistanceLoss(Loss):
    """Levenshtein distance of a label sequence output (e.g. a ``decide`` on a search) to the target sequence, per
    target label; score and error both. Not differentiable: it adds nothing to what training minimizes."""

    def __init__(self, opts: Any, *, output: Data, target: Data | None, target_name: str, where: str):
        super().__init__(opts, output=output, target=target, target_name=target_name, where=where)
        if not (output.sparse and target.sparse) or output.time_dim is None or target.time_dim is None:
            raise LayerConfigError(f"{where}: edit_distance compares sparse label sequences; got output "
                                   f"{output.describe()}, target {target.describe()}")

    def __call__(self, output: Data, target: Data) -> LossValue:
        hyp, ref = _batch_time_major(output), _batch_time_major(target)
        ref_lens = ref.get_dyn_size(ref.time_dim)
        distance = tf.edit_distance(sparse_label_seqs(hyp.tensor, hyp.get_dyn_size(hyp.time_dim)),
                                    sparse_label_seqs(ref.tensor, ref_lens), normalize=False)
        num_labels = tf.reduce_sum(ref_lens)
        per_label = tf.reduce_sum(distance) / tf.maximum(tf.cast(num_labels, tf.float32), 1.0)
        return LossValue(per_label, per_label, num_labels, objective=tf.zeros([]))
