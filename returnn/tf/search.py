"""Task search: the searched hypotheses of ``search_output_layer`` for every sequence of ``search_data``, written
to ``search_output_file`` and scored against the reference (``search_do_eval``)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Mapping

import numpy as np
import tensorflow as tf

from returnn.config import Config
from returnn.datasets import Dataset, batch_generator_from_config
from returnn.datasets.batching import inference_batch_config
from returnn.datasets.base import init_dataset_from_config
from returnn.errors import ConfigError
from returnn.log import STEP, logger
from returnn.tensor.extern_data import check_dataset_matches_extern_data, seq_len_key
from returnn.tf.net_graph import DATA, NetGraph
from returnn.tf.network import Network
from returnn.tf.search_output import SearchOutputWriter, labels_to_text
from returnn.tf.steps import warn_on_retrace
from returnn.util.edit_distance import ErrorRate, corpus_bleu
from returnn.util.progress import format_duration


@dataclasses.dataclass
class Reference:
    """Where the reference of the searched layer comes from: an extern key of the dataset, or a layer that
    registers it (computed by ``network``); ``drop_end``: the reference's last label is the end step, which the
    hypotheses leave out (``include_eos`` False)."""

    key: str
    network: Network | None = None
    drop_end: bool = False


def search_dataset(config: Config) -> tuple[str, Dataset]:
    """``search_data``: a config key naming a dataset (default ``eval``) or a dataset dict / spec."""
    value = config.typed_value("search_data", "eval")
    key = value if isinstance(value, str) and config.typed_value(value) is not None else "search_data"
    if isinstance(value, str) and key == "search_data" and value in ("eval", "dev", "train"):
        raise ConfigError(f'config key "search_data" is {value!r}, but config key {value!r} is not set')
    try:
        dataset = init_dataset_from_config(config, key, train=False)
    except ConfigError as exc:
        raise ConfigError(f'config key "{key}": {exc}') from exc
    return key, dataset


def layer_target(net_dict: Mapping[str, Any], layer: str) -> tuple[str | None, Mapping[str, Any] | None]:
    """The target of the searched ``layer``: its own, its choice's (the ``output`` of a rec unit), or that of the
    layer a ``decide`` reads; and the rec layer dict that searches (None: not found)."""
    spec = net_dict.get(layer)
    while isinstance(spec, Mapping) and spec.get("class") in ("decide", "copy") and isinstance(spec.get("from"), str):
        spec = net_dict.get(spec["from"])
    if not isinstance(spec, Mapping):
        return None, None
    unit = spec.get("unit")
    if isinstance(unit, Mapping) and isinstance(unit.get("output"), Mapping):
        return unit["output"].get("target") or spec.get("target"), spec
    return spec.get("target"), None


def reference_for(config: Config, net_dict: Mapping[str, Any], layer: str, dataset: Dataset) -> Reference | None:
    """The reference of ``layer`` that ``dataset`` can give, or None (logged: why)."""
    target, rec = layer_target(net_dict, layer)
    if target is None or target.startswith("layer:"):
        logger.info(f"search_do_eval: layer {layer!r} has no target to compare with; not scoring")
        return None
    drop_end = rec is not None and "end" in rec["unit"] and not rec.get("include_eos", False)
    if target in dataset.get_data_keys():
        return Reference(target, drop_end=drop_end)
    registering = _registering_layer(net_dict, target)
    missing = [key for key in _data_keys_read(net_dict, registering) if key not in dataset.get_data_keys()] \
        if registering is not None else [target]
    if missing:
        logger.info(f"search_do_eval: the dataset has no {', '.join(map(repr, missing))} for the reference "
                    f"{target!r}; not scoring")
        return None
    network = Network.from_config(config, roots=[registering])
    return Reference(target, network=network, drop_end=drop_end)


def _data_keys_read(net_dict: Mapping[str, Any], layer: str) -> list[str]:
    """The extern keys ``layer`` reads, directly or through the layers it reads."""
    graph = NetGraph(net_dict)
    names = [layer] + sorted(graph.depends_on(layer))
    return sorted({ref.name for name in names for ref in graph.refs(name) if ref.kind == DATA})


def vocab_for(dataset: Dataset, net_dict: Mapping[str, Any], target: str | None) -> list[str] | None:
    """The label strings of ``target``: the dataset's vocab of that key, or of the key a layer registering it
    reads (e.g. ``classes`` with an end label appended)."""
    if target is None:
        return None
    if target in dataset.labels:
        return list(dataset.labels[target])
    registering = _registering_layer(net_dict, target)
    keys = _data_keys_read(net_dict, registering) if registering is not None else []
    return next((list(dataset.labels[key]) for key in keys if key in dataset.labels), None)


def _registering_layer(net_dict: Mapping[str, Any], key: str) -> str | None:
    """The layer whose output is extern key ``key`` (``register_as_extern_data``), or None."""
    return next((name for name, spec in net_dict.items()
                 if isinstance(spec, Mapping) and spec.get("register_as_extern_data") == key), None)


def search_function(network: Network, layer: str) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """One ``tf.function`` per batch shape family: batch -> labels, their lengths, and beam scores when the
    layer keeps the beam."""
    def search(batch: Mapping[str, Any]) -> dict[str, Any]:
        out = network(batch)[layer]
        result = {"output": out.copy_move_axis(out.batch_dim_axis, 0).tensor}
        if out.seq_lens is not None:
            result["lens"] = out.seq_lens
        if out.beam_scores is not None:
            result["scores"] = out.beam_scores
        return result

    return tf.function(search, input_signature=[network.input_signature()], autograph=False)


class SearchProgress:
    """Sequences done of the total, their rate and the ETA: a log line per batch at the step level, at most one
    per ``interval`` seconds (and the last) at the info level."""

    def __init__(self, total: int | None, *, interval: float = 10.0):
        self.total, self.done, self.interval = total, 0, interval
        self.start = self.last_info = time.monotonic()

    def add(self, num_seqs: int) -> None:
        self.done += num_seqs
        now = time.monotonic()
        rate = self.done / max(now - self.start, 1e-9)
        line = f"search: {self.done}/{self.total or '?'} seqs, {rate:.1f} seqs/sec"
        if self.total:
            line += f", ETA {format_duration((self.total - self.done) / rate if rate else 0.0)}"
        finished = self.total is not None and self.done >= self.total
        if finished or now - self.last_info >= self.interval:
            self.last_info = now
            logger.info(line)
        else:
            logger.log(STEP, line)


class SearchScorer:
    """Edit distance of each hypothesis to its reference; word error rate and BLEU when there is a vocab."""

    def __init__(self, vocab: list[str] | None, *, bpe_join: bool):
        self.vocab, self.bpe_join = vocab, bpe_join
        self.errors = ErrorRate(unit="word" if vocab is not None else "label")
        self.refs: list[list[str]] = []
        self.hyps: list[list[str]] = []

    def add(self, ref: np.ndarray, hyp: np.ndarray) -> None:
        if self.vocab is None:
            self.errors.add(ref.tolist(), hyp.tolist())
            return
        ref_words, hyp_words = (_text(labels, self.vocab, self.bpe_join).split() for labels in (ref, hyp))
        self.errors.add(ref_words, hyp_words)
        self.refs.append(ref_words)
        self.hyps.append(hyp_words)

    def summary(self) -> str:
        text = self.errors.summary()
        if self.vocab is not None:
            text += f", BLEU {corpus_bleu(self.refs, self.hyps):.2f}"
        return text


def _text(labels: np.ndarray, vocab: list[str] | None, bpe_join: bool) -> Any:
    """The labels as text (ids outside the vocab, e.g. an end label, as ``<id>``); as ints without a vocab."""
    if vocab is not None and any(not 0 <= int(label) < len(vocab) for label in labels):
        vocab = vocab + [f"<{i}>" for i in range(len(vocab), int(np.max(labels)) + 1)]
    return labels_to_text(labels, vocab, bpe_join=bpe_join)


def search_and_write(engine: Any, config: Config, *, epoch: int, dataset: Dataset | None = None,
                     layer: str | None = None, do_eval: bool | None = None, output_file: str | None = None,
                     output_file_format: str | None = None) -> dict[str, Any]:
    """Search every sequence of ``dataset`` (default: ``search_data``); the other arguments left None come from
    the config keys. Returns ``{"num_seqs": n, "error": ErrorRate or None}``."""
    network: Network = engine.network
    layer = layer or config.value("search_output_layer", "output")
    if layer not in network.layers:
        raise ConfigError(f'config key "search_output_layer": no layer {layer!r}; layers: {", ".join(network.layers)}')
    template = network.templates[layer]
    if template.batch_dim_axis is None or not template.sparse:
        raise ConfigError(f'config key "search_output_layer": layer {layer!r} gives {template.describe()}; expected '
                          "sparse labels per sequence (a rec layer whose choice searches, or a decide layer on one)")
    beam_size = template.beam.beam_size if template.beam is not None else None
    data_key, dataset = ("search_data", dataset) if dataset is not None else search_dataset(config)
    check_dataset_matches_extern_data(dataset, network.extern_data, data_key)
    net_dict = engine.full_net_dict
    target, _ = layer_target(net_dict, layer)
    vocab = vocab_for(dataset, net_dict, target)
    bpe_join = config.bool("search_output_bpe_join", False)
    do_eval = config.bool("search_do_eval", True) if do_eval is None else do_eval
    reference = reference_for(config, net_dict, layer, dataset) if do_eval else None
    scorer = SearchScorer(vocab, bpe_join=bpe_join) if reference is not None else None
    out_file = output_file or config.value("search_output_file")
    fmt = output_file_format or config.value("search_output_file_format", _format_from_name(out_file))
    writer = SearchOutputWriter(out_file, fmt) if out_file else None
    search = search_function(network, layer)
    ref_forward = None if reference is None or reference.network is None else reference.network.forward_function()
    batch_config = inference_batch_config(config, "search_batch_size")
    progress = SearchProgress(dataset.estimated_num_seqs or None)
    num_seqs = 0
    try:
        with batch_generator_from_config(dataset, batch_config, epoch=epoch, train=False) as batches:
            for batch in batches:
                out = {key: value.numpy() for key, value in search(network.feed(batch)).items()}
                refs = _references(reference, ref_forward, batch) if reference is not None else None
                for i, tag in enumerate(batch.seq_tags):
                    hyps = _hypotheses(out, i, beam_size)
                    if writer is not None:
                        texts = [(score, _text(labels, vocab, bpe_join)) for score, labels in hyps]
                        writer.add(dataset.get_corpus_seq_idx(int(batch.seq_idx[i])), tag,
                                   texts if beam_size is not None else texts[0][1])
                    if scorer is not None:
                        scorer.add(refs[i], hyps[0][1])
                num_seqs += len(batch.seq_tags)
                progress.add(len(batch.seq_tags))
        if writer is not None:
            writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    warn_on_retrace(search, "search")
    if scorer is not None:
        logger.info(f"search {data_key}, epoch {epoch}, layer {layer!r}: {num_seqs} seqs, {scorer.summary()}")
    if writer is not None:
        logger.info(f"search: {num_seqs} hypotheses written to {out_file}")
    return {"num_seqs": num_seqs, "error": None if scorer is None else scorer.errors}


def _format_from_name(path: str | None) -> str:
    """The default ``search_output_file_format``: "py" for a ``.py`` (``.py.gz``) file, else "txt"."""
    name = (path or "")[:-len(".gz")] if (path or "").endswith(".gz") else (path or "")
    return "py" if name.endswith(".py") else "txt"


def _hypotheses(out: Mapping[str, np.ndarray], i: int, beam_size: int | None) -> list[tuple[float, np.ndarray]]:
    """``[(score, labels)]`` of sequence ``i`` of a batch, best first (one entry without a beam)."""
    labels, lens, scores = out["output"], out.get("lens"), out.get("scores")
    rows = range(i * beam_size, (i + 1) * beam_size) if beam_size is not None else [i]
    hyps = []
    for row in rows:
        length = labels.shape[1] if lens is None else int(lens[row])
        hyps.append((float(scores[row]) if scores is not None else 0.0, labels[row, :length]))
    return sorted(hyps, key=lambda hyp: -hyp[0]) if scores is not None else hyps


def _references(reference: Reference, ref_forward: Any, batch: Any) -> list[np.ndarray]:
    """The reference labels of each sequence of ``batch`` (without the end label when the hypotheses have none)."""
    if ref_forward is None:
        values, lens = batch[reference.key], batch[seq_len_key(reference.key)]
    else:
        net = reference.network
        layer = net.root_names[0]
        out = ref_forward(net.feed(batch))
        template = net.templates[layer]
        values = np.moveaxis(out[layer].numpy(), template.batch_dim_axis, 0)
        lens = out[seq_len_key(layer)].numpy()
    drop = 1 if reference.drop_end else 0
    return [np.asarray(values[i, :max(int(lens[i]) - drop, 0)]) for i in range(len(lens))]
