"""The math of a beam search step and of backtracking its hypotheses.

The beam lives in the batch axis: hypothesis k of sequence b at index ``b * K + k`` (``K`` the beam size).
At step 0 every hypothesis of a sequence is the same, so only the first one counts (the others start at
``NEG``). A hypothesis that ended keeps its score and length and has a single continuation (its label again).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import tensorflow as tf

from returnn.tensor.data import Data

NEG = -1e30  # the score of a hypothesis that does not exist (finite: no inf - inf)


class BeamState(NamedTuple):
    """What a searching choice carries from step to step; every field [B*K]."""

    scores: Any  # accumulated log scores
    ranking: Any  # the scores the beam is sorted by (length-normalized when asked)
    lengths: Any  # labels so far (frozen once a hypothesis ended)
    ended: Any  # the loop sets this after each step from the ``end`` layer
    labels: Any  # the label chosen last
    src_beams: Any  # the hypothesis (0..K-1 within its sequence) each one continues


def initial_beam_state(batch_size: Any, beam_size: int) -> BeamState:
    """Step 0: ``batch_size`` (= B * K) hypotheses, of each sequence only the first alive."""
    first = tf.concat([[0.0], tf.fill([beam_size - 1], NEG)], 0)
    scores = tf.tile(first, [batch_size // beam_size])
    zeros = tf.zeros([batch_size], tf.int32)
    return BeamState(scores, scores, zeros, tf.zeros([batch_size], tf.bool), zeros, zeros)


def log_scores(data: Data, input_type: str) -> Any:
    """Log scores [B*K, V] of a choice's input: a softmax output (from its logits when it has them), log probs or
    logits."""
    if input_type == "prob":
        if data.logits is not None:
            return tf.nn.log_softmax(tf.cast(data.logits, tf.float32), axis=-1)
        return tf.math.log(tf.maximum(tf.cast(data.tensor, tf.float32), 1e-30))
    if input_type == "logits":
        return tf.nn.log_softmax(tf.cast(data.tensor, tf.float32), axis=-1)
    return tf.cast(data.tensor, tf.float32)


def select_in_beam(state: BeamState, log_probs: Any, *, beam_size: int, base_scale: float,
                   length_exponent: float | None, noise_scale: float) -> BeamState:
    """The ``beam_size`` best continuations per sequence of the hypotheses in ``state`` by ``log_probs`` [B*K, V];
    ``length_exponent``: rank by score / length ** exponent (None: by score)."""
    k = beam_size
    vocab = tf.shape(log_probs)[-1]
    ended = state.ended[:, None]
    keep = tf.one_hot(state.labels, vocab, on_value=0.0, off_value=NEG)  # an ended hypothesis: its label again
    scores = tf.where(ended, state.scores[:, None] + keep, base_scale * state.scores[:, None] + log_probs)
    lengths = tf.where(state.ended, state.lengths, state.lengths + 1)
    ranking = scores
    if length_exponent is not None:
        ranking = scores / tf.pow(tf.cast(tf.maximum(lengths, 1), tf.float32), length_exponent)[:, None]
    chosen_by = ranking
    if noise_scale:
        uniform = tf.random.uniform(tf.shape(ranking), 1e-10, 1.0)
        chosen_by = ranking + tf.where(ended, 0.0, noise_scale * -tf.math.log(-tf.math.log(uniform)))
    per_seq = tf.reshape(chosen_by, [-1, k * vocab])  # [B, K*V]
    _, flat = tf.math.top_k(per_seq, k=k)  # [B, K], best first
    src = flat // vocab
    labels = flat % vocab
    rows = source_rows(tf.reshape(src, [-1]), k)

    def take(per_candidate: Any) -> Any:
        return tf.gather(tf.reshape(per_candidate, [-1, k * vocab]), flat, batch_dims=1)

    return BeamState(scores=tf.reshape(take(scores), [-1]), ranking=tf.reshape(take(ranking), [-1]),
                     lengths=tf.gather(lengths, rows), ended=tf.gather(state.ended, rows),
                     labels=tf.reshape(labels, [-1]), src_beams=tf.reshape(src, [-1]))


def source_rows(src_beams: Any, beam_size: int) -> Any:
    """[..., B*K] indices (into the flat batch) of the hypotheses continued, from the within-sequence
    ``src_beams`` [..., B*K]."""
    seq = tf.range(tf.shape(src_beams)[-1]) // beam_size
    return seq * beam_size + src_beams


def backtrack_rows(src_beams: Any, beam_size: int) -> tuple[Any, Any]:
    """For the hypotheses at the last step, the row each one had after every step (``after`` [T, B*K]) and before
    it (``before`` [T, B*K], the row whose values a layer computed ahead of the choice had), from the stacked
    ``src_beams`` [T, B*K] of each step."""
    rows = source_rows(src_beams, beam_size)  # [T, B*K]: a row after step t -> its row before it
    last = tf.range(tf.shape(src_beams)[1])

    def back(after_next: Any, rows_t: Any) -> Any:
        return tf.gather(rows_t, after_next)

    # before[t] = rows[t][after[t]]; after[t - 1] = before[t]
    before = tf.scan(back, rows, initializer=last, reverse=True)
    after = tf.concat([before[1:], last[None]], 0)
    return after, before


def gather_rows(tensor: Any, rows: Any) -> Any:
    """``tensor`` [T, B*K, ...] with each step's rows taken in the order ``rows`` [T, B*K] says."""
    return tf.gather(tensor, rows, batch_dims=1)
