"""One beam search step (``select_in_beam``) and the backtracking, against hand-computed values."""

import numpy as np
import tensorflow as tf

from returnn.tf.layers.rec.beam import BeamState, backtrack_rows, initial_beam_state, select_in_beam


def _state(scores, lengths, ended, labels) -> BeamState:
    scores = tf.constant(scores, tf.float32)
    return BeamState(scores, scores, tf.constant(lengths, tf.int32), tf.constant(ended), tf.constant(labels, tf.int32),
                     tf.zeros([len(lengths)], tf.int32))


def _step(state, log_probs, **opts) -> BeamState:
    defaults = {"beam_size": 2, "base_scale": 1.0, "length_exponent": None, "noise_scale": 0.0}
    return select_in_beam(state, tf.constant(np.log(log_probs), tf.float32), **{**defaults, **opts})


def test_the_first_step_expands_only_the_first_hypothesis():
    state = initial_beam_state(tf.constant(4), 2)  # 2 sequences, beam 2
    probs = np.array([[0.5, 0.3, 0.2], [0.9, 0.05, 0.05], [0.1, 0.2, 0.7], [0.6, 0.2, 0.2]])
    new = _step(state, probs)
    np.testing.assert_array_equal(new.labels.numpy(), [0, 1, 2, 1])  # seq 1 ignores its second row's 0.6
    np.testing.assert_array_equal(new.src_beams.numpy(), [0, 0, 0, 0])
    np.testing.assert_allclose(new.scores.numpy(), np.log([0.5, 0.3, 0.7, 0.2]), rtol=1e-6)
    np.testing.assert_array_equal(new.lengths.numpy(), [1, 1, 1, 1])


def test_scores_add_up_and_the_best_continuations_of_all_hypotheses_win():
    state = _state(np.log([0.5, 0.4]), [1, 1], [False, False], [0, 1])
    probs = np.array([[0.6, 0.4], [0.9, 0.1]])
    new = _step(state, probs)
    # 0.5*0.6=0.30, 0.5*0.4=0.20, 0.4*0.9=0.36, 0.4*0.1=0.04 -> hyp 1 + label 0, hyp 0 + label 0
    np.testing.assert_array_equal(new.src_beams.numpy(), [1, 0])
    np.testing.assert_array_equal(new.labels.numpy(), [0, 0])
    np.testing.assert_allclose(np.exp(new.scores.numpy()), [0.36, 0.30], rtol=1e-6)


def test_an_ended_hypothesis_keeps_score_length_and_label():
    state = _state(np.log([0.5, 0.4]), [3, 2], [True, False], [2, 1])
    probs = np.array([[0.1, 0.1, 0.8], [0.9, 0.05, 0.05]])
    new = _step(state, probs)
    np.testing.assert_array_equal(new.src_beams.numpy(), [0, 1])  # 0.5 (ended) beats 0.4 * 0.9
    np.testing.assert_array_equal(new.labels.numpy(), [2, 0])
    np.testing.assert_allclose(np.exp(new.scores.numpy()), [0.5, 0.36], rtol=1e-6)
    np.testing.assert_array_equal(new.lengths.numpy(), [3, 3])
    np.testing.assert_array_equal(new.ended.numpy(), [True, False])


def test_length_normalization_ranks_by_score_per_label():
    # hyp 0 ended after 1 label with log score -1.0; hyp 1 (2 labels so far, -1.2) continues with -0.3 -> -1.5 / 3
    state = _state([-1.0, -1.2], [1, 2], [True, False], [0, 0])
    log_probs = np.exp(np.array([[-5.0, -5.0], [-0.3, -4.0]]))
    plain = _step(state, log_probs)
    normalized = _step(state, log_probs, length_exponent=1.0)
    np.testing.assert_array_equal(plain.src_beams.numpy(), [0, 1])  # -1.0 beats -1.5
    np.testing.assert_array_equal(normalized.src_beams.numpy(), [1, 0])  # -0.5 per label beats -1.0
    np.testing.assert_allclose(normalized.ranking.numpy(), [-0.5, -1.0], rtol=1e-6)
    np.testing.assert_allclose(normalized.scores.numpy(), [-1.5, -1.0], rtol=1e-6)


def test_base_beam_score_scale_weights_the_score_so_far():
    state = _state([-2.0, -1.0], [1, 1], [False, False], [0, 0])
    log_probs = np.exp(np.array([[-0.1, -3.0], [-1.5, -3.0]]))
    new = _step(state, log_probs, base_scale=0.0)
    np.testing.assert_allclose(new.scores.numpy(), [-0.1, -1.5], rtol=1e-6)  # only this step's scores count


def test_backtracking_follows_the_back_pointers():
    # one sequence, beam 2, three steps; src_beams[t][k]: the hypothesis (before step t) that k continues
    src = tf.constant([[0, 0], [1, 0], [1, 1]], tf.int32)
    after, before = backtrack_rows(src, 2)
    # final hyp 0 <- step-2 src 1 <- step-1 src 0 <- step-0 src 0; final hyp 1 <- 1 <- 0 <- 0
    np.testing.assert_array_equal(after.numpy(), [[0, 0], [1, 1], [0, 1]])
    np.testing.assert_array_equal(before.numpy(), [[0, 0], [0, 0], [1, 1]])
